// Config field kinds for network settings: listen addresses and IP/CIDR lists.
import { parseCidr } from './addresses.js'
import { strings, text } from '../config/fields.js'

const hostPortSource = '(?:\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]*):\\d{1,5}'
export const hostPortExpect = 'an address like "0.0.0.0:5443", "127.0.0.1:80" or "[::1]:5443"'

/**
 * A listen address, host:port, whose port fits in 16 bits (the pattern allows five digits); with `orEmpty`
 * an empty string (no listener) too, and `expect` describes both.
 */
export function listenAddress(options: { orEmpty?: boolean; expect?: string } = {}) {
  const pattern = new RegExp(options.orEmpty ? `^(?:${hostPortSource})?$` : `^${hostPortSource}$`)
  return text({ pattern, expect: options.expect ?? hostPortExpect }).refine(
    (address) => !pattern.test(address) || Number(/:(\d+)$/.exec(address)?.[1] ?? 0) <= 65535,
    { error: 'a port from 0 to 65535' },
  )
}

/** A list whose entries are each an IP address or a CIDR. */
export function cidrs() {
  return strings((entry) => (parseCidr(entry) === undefined ? 'an IP address or CIDR like 10.0.0.0/8' : undefined))
}
