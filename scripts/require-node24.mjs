// Plain JavaScript on purpose: it must run on old Node versions to explain the problem.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(
    `Gatehouse needs Node.js 24 or newer; this is Node.js ${process.versions.node}.\n` +
      'Install Node 24: from https://nodejs.org/en/download, with a version manager (nvm install 24, fnm install 24),\n' +
      "or your distribution's packages from NodeSource (https://github.com/nodesource/distributions).",
  );
  process.exit(1);
}
