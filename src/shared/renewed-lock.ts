// A lock held across instances, renewed every third of its TTL until released (once); the engines say how to renew and release.
import type { HeldSharedLock } from './types.js'

export function renewedLock(ttlMs: number, renew: () => void, release: () => Promise<void>): HeldSharedLock {
  const timer = setInterval(renew, Math.max(100, Math.floor(ttlMs / 3)))
  timer.unref()
  let released = false
  return {
    async release() {
      if (released) return
      released = true
      clearInterval(timer)
      await release()
    },
  }
}
