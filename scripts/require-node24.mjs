// Plain JavaScript on purpose: it must run on old Node versions to explain the problem.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(
    `Gatehouse needs Node.js 24 or newer; this is Node.js ${process.versions.node}.\n` +
      'Install Node 24 (https://nodejs.org), or on the project machines run: source ../shared/bin/node24.sh',
  );
  process.exit(1);
}
