/**
 * Which way imports go in src/ (README.md, "Architecture"): each layer imports only itself and
 * the layers below it. `npm run deps` checks it, and `npm test` runs that first.
 *
 *   cli       src/cli/                     the only importer of server/ (with src/index.ts and tests)
 *   server    src/server/                  composition root: Gatehouse, Services, the route table
 *   pipeline  src/pipeline/                route → decide → outcome, and the entry points
 *   features  audit sessions accounts mail providers oauth diagnosis proxy identity mfa events
 *   model     store cache keys policy sites metrics jobs
 *   base      config log http pages health
 *   verify    src/verify/ stands alone (gatehouse/verify for apps: imports nothing of ours)
 */
const layers = {
  base: ['config', 'log', 'http', 'pages', 'health'],
  model: ['store', 'cache', 'keys', 'policy', 'sites', 'metrics', 'jobs'],
  features: ['audit', 'sessions', 'accounts', 'mail', 'providers', 'oauth', 'diagnosis', 'proxy', 'identity', 'mfa', 'events'],
  pipeline: ['pipeline'],
  server: ['server'],
  cli: ['cli'],
};
const order = Object.keys(layers);
const folders = (names) => `^src/(${names.join('|')})/`;
/** The folders a layer may import: its own and those of every layer below it, and verify/. */
const allowed = (layer) => [...order.slice(0, order.indexOf(layer) + 1).flatMap((l) => layers[l]), 'verify'];

module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      comment: 'An import cycle makes the order of start-up and the layers unreadable.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'composition-root-only-from-cli',
      comment: 'server/ is the composition root: only the CLI (and src/index.ts, the library entry) import it.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/(cli|server)/', '^src/index\\.ts$'] },
      to: { path: '^src/server/' },
    },
    {
      name: 'verify-stands-alone',
      comment: 'gatehouse/verify is published for apps: jose only, nothing else of ours.',
      severity: 'error',
      from: { path: '^src/verify/' },
      to: { path: '^src/', pathNot: '^src/verify/' },
    },
    ...order.map((layer) => ({
      name: `layer-${layer}`,
      comment: `${layer} (${layers[layer].join(', ')}) imports only ${allowed(layer).join(', ')}.`,
      severity: 'error',
      from: { path: folders(layers[layer]) },
      to: { path: '^src/', pathNot: folders(allowed(layer)) },
    })),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist)/' },
    // TypeScript 7 (the Go port) has no JavaScript API for dependency-cruiser to use; swc parses
    // the sources instead, so no "missing-tsc-transpiler" warning applies to this set-up.
    parser: 'swc',
    // `import type` counts: a type-only import ties the layers together as much as any other.
    tsPreCompilationDeps: true,
    moduleSystems: ['es6'],
  },
};
