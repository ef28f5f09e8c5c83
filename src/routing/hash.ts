// Rendezvous (highest random weight) hashing: which upstream owns a repository, stable when upstreams come and go.
import { createHash } from 'node:crypto'

export interface HashNode {
  name: string
  /** Relative share of keys; 1 when absent. */
  weight?: number
}

/**
 * A uniform number in (0, 1) from SHA-256 of node name and key. Every node scores every key on
 * its own, so adding a node only takes the keys it now wins (about 1/N), and removing one only
 * moves the keys it held.
 */
function uniform(node: string, key: string): number {
  const digest = createHash('sha256').update(node).update('\u0000').update(key).digest()
  const high = digest.readUInt32BE(0)
  const low = digest.readUInt32BE(4) >>> 11
  // 53 random bits, shifted off 0 and 1 so the logarithm below is finite and negative.
  return (high * 2 ** 21 + low + 0.5) / 2 ** 53
}

/** The node's score for a key: weighted rendezvous (-w / ln u), so a node of weight 2 wins twice as many keys. */
export function rendezvousScore(node: HashNode, key: string): number {
  return -(node.weight ?? 1) / Math.log(uniform(node.name, key))
}

/** The node that owns `key`: the highest score, ties (practically impossible) broken by name. */
export function rendezvousOwner<T extends HashNode>(nodes: readonly T[], key: string): T {
  let best: T | undefined
  let bestScore = -Infinity
  for (const node of nodes) {
    const score = rendezvousScore(node, key)
    if (score > bestScore || (score === bestScore && best !== undefined && node.name < best.name)) {
      best = node
      bestScore = score
    }
  }
  if (!best) throw new Error('rendezvous hashing needs at least one node')
  return best
}
