import { serve } from '../src/cli/serve.ts';
import { startDemoApp } from './app.ts';

/** `npm start`: the demo app on :8081 and Gatehouse in front of it on :8080. */
const port = Number(process.env.DEMO_APP_PORT ?? 8081);
const { server } = await startDemoApp(port);
const publicUrl = process.env.GATEHOUSE_PUBLIC_URL ?? 'http://127.0.0.1:8080';
process.stderr.write(`\n  Demo app on http://127.0.0.1:${port} (only Gatehouse talks to it)\n  Open ${publicUrl}/ , create an account, and watch X-User-Id appear.\n\n`);
const code = await serve(new URL('./gatehouse.yaml', import.meta.url).pathname);
server.close();
process.exit(code);
