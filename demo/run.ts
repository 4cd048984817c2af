import { serve } from '../src/cli/serve.ts';
import { startDemoApp } from './app.ts';

/**
 * `npm start`: the demo app on :8081 and Gatehouse in front of it on :8080, as configured in
 * demo/gatehouse.yaml. GATEHOUSE_PORT, GATEHOUSE_PUBLIC_URL, DEMO_APP_PORT and
 * GATEHOUSE_DATA_DIR (default ./data) move them.
 */
const port = Number(process.env.DEMO_APP_PORT || 8081);
const publicUrl = process.env.GATEHOUSE_PUBLIC_URL || `http://127.0.0.1:${process.env.GATEHOUSE_PORT || 8080}`;

let server;
try {
  ({ server } = await startDemoApp(port, '127.0.0.1', { gatehouseUrl: publicUrl }));
} catch (e) {
  const code = (e as NodeJS.ErrnoException).code;
  process.stderr.write(
    `demo: cannot listen on 127.0.0.1:${port}: ${code === 'EADDRINUSE' ? 'the port is in use (another demo still running?); stop it or set DEMO_APP_PORT' : (e as Error).message}\n`,
  );
  process.exit(1);
}
process.stderr.write(
  `\n  Demo app on http://127.0.0.1:${port} (only Gatehouse talks to it)\n` +
    `  Gatehouse on ${publicUrl} , store in ${process.env.GATEHOUSE_DATA_DIR || './data'}/gatehouse.db\n` +
    `  Open ${publicUrl}/ , create an account, and watch X-User-Id appear. Ctrl-C stops both.\n\n`,
);
const code = await serve(new URL('./gatehouse.yaml', import.meta.url).pathname);
server.close();
process.exit(code);
