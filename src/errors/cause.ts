// The chain of causes behind an error, as short strings for one log line.

const MAX_DEPTH = 5

/** `["connect ECONNREFUSED 127.0.0.1:5000 (ECONNREFUSED)", …]` for error.cause, its cause, …; undefined without one. */
export function causeChain(error: unknown): string[] | undefined {
  const chain: string[] = []
  let current = error instanceof Error ? error.cause : undefined
  // Bounded: a cause that (by mistake) points back at its error would otherwise loop.
  while (current !== undefined && chain.length < MAX_DEPTH) {
    chain.push(describe(current))
    current = current instanceof Error ? current.cause : undefined
  }
  return chain.length > 0 ? chain : undefined
}

function describe(cause: unknown): string {
  if (!(cause instanceof Error)) return String(cause)
  const code = (cause as NodeJS.ErrnoException).code
  return typeof code === 'string' && !cause.message.includes(code) ? `${cause.message} (${code})` : cause.message
}
