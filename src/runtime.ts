// The Node.js versions Portier runs on: refuses an older runtime at start-up with a clear message.
// Imported first by cli.ts, so the check runs before any other module's code.

/** Oldest supported major version; equals package.json `engines`, the Dockerfile's base and scripts/node-runtime.sh. */
export const MIN_NODE_MAJOR = 24

/** The running Node.js major version (e.g. 24 for v24.22.3). */
export function nodeMajor(version: string = process.versions.node): number {
  return Number.parseInt(version.split('.')[0] ?? '', 10)
}

// Older runtimes are out of support (Node 20 reached end-of-life on 2026-04-30): no security fixes for the TLS stack.
if (!(nodeMajor() >= MIN_NODE_MAJOR)) {
  process.stderr.write(
    `portier: Node.js ${MIN_NODE_MAJOR} or newer is required, this is ${process.version}. ` +
      `Run it through npm start or scripts/with-node.sh, which provide Node.js ${MIN_NODE_MAJOR} (see README, "Node.js version").\n`,
  )
  process.exit(1)
}
