import { createRequire } from 'node:module';
import { cruise, format, type ICruiseResult, type IConfiguration } from 'dependency-cruiser';

/**
 * `npm run deps`: the dependency rules of .dependency-cruiser.cjs (layers, no cycles, the
 * composition root imported by the CLI only) over src/. Exit 1 on any violation.
 *
 * dependency-cruiser's own CLI would do, but it also prints "missing-tsc-transpiler" on every
 * run: it looks for TypeScript's JavaScript API, which TypeScript 7 (the Go port) does not have.
 * Nothing is missed: swc (options.parser) parses the sources, `import type` included. That
 * notice is dropped here; every other one is printed.
 */
const config = createRequire(import.meta.url)('../.dependency-cruiser.cjs') as IConfiguration;
const { output } = await cruise(['src'], { ...config.options, validate: true, ruleSet: config });
const result = output as ICruiseResult;
const issues = result.summary.environment?.issues?.filter((i) => i.name !== 'missing-tsc-transpiler');
if (result.summary.environment) result.summary.environment.issues = issues ?? [];
const report = await format(result, { outputType: 'err' });
process.stdout.write(
  typeof report.output === 'string' && report.output.trim()
    ? report.output
    : `no dependency violations (${result.summary.totalCruised} modules, ${result.summary.totalDependenciesCruised} imports)\n`,
);
process.exitCode = report.exitCode === 0 ? 0 : 1;
