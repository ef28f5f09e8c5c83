// IP addresses and CIDR ranges as config names them (trusted proxies, ACL rules) and as sockets report them.
import { BlockList, isIP } from 'node:net'

export type IpFamily = 'ipv4' | 'ipv6'

/** "10.0.0.0/8", "2001:db8::/32" or a bare address (a range of one); undefined when not valid. */
export function parseCidr(text: string): { address: string; prefix: number; family: IpFamily } | undefined {
  const [address, bits, extra] = text.split('/')
  if (extra !== undefined || address === undefined) return undefined
  const version = isIP(address)
  if (version === 0) return undefined
  const family = version === 4 ? 'ipv4' : 'ipv6'
  const max = version === 4 ? 32 : 128
  if (bits === undefined) return { address, prefix: max, family }
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return undefined
  return { address, prefix: Number(bits), family }
}

/** The address as a socket on a dual-stack listener reports it, with ::ffff:10.1.2.3 turned into 10.1.2.3. */
export function plainIp(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
  return mapped ? (mapped[1] as string) : ip
}

export interface AddressList {
  /** Whether the address lies in one of the ranges; false for anything that is not an IP address. */
  has(ip: string): boolean
}

/** Compiles ranges once; entries must already be valid (config loading checks them with parseCidr). */
export function createAddressList(entries: readonly string[]): AddressList {
  const list = new BlockList()
  for (const entry of entries) {
    const cidr = parseCidr(entry)
    if (!cidr) throw new Error(`not an IP address or CIDR: ${entry}`)
    list.addSubnet(cidr.address, cidr.prefix, cidr.family)
  }
  return {
    has(ip) {
      if (entries.length === 0) return false
      const address = plainIp(ip)
      const version = isIP(address)
      return version !== 0 && list.check(address, version === 4 ? 'ipv4' : 'ipv6')
    },
  }
}

/**
 * The address an attacker cannot cheaply change: IPv4 as is (IPv4-mapped IPv6 unwrapped), IPv6 by
 * its /64, because one host usually holds a whole /64 and could rotate through it.
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
  if (mapped) return mapped[1] as string
  const address = ip.replace(/%.*$/, '')
  const version = isIP(address)
  if (version === 4) return address
  if (version !== 6) return ip
  let text = address.toLowerCase()
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const headParts = head === '' ? [] : head.split(':')
  const tailParts = tail === undefined || tail === '' ? [] : tail.split(':')
  const zeros = Array<string>(8 - headParts.length - tailParts.length).fill('0')
  const groups = tail === undefined ? headParts : [...headParts, ...zeros, ...tailParts]
  return `${groups.slice(0, 4).map((group) => parseInt(group, 16).toString(16)).join(':')}::/64`
}
