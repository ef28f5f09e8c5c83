// How sizes, dates and digests read on screen.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined) return '—'
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`
}

export function exactBytes(bytes: number): string {
  return `${bytes.toLocaleString('en')} bytes`
}

/** "2026-11-23 12:02 UTC": the same for every viewer, sortable by eye. */
export function formatDate(iso: string | undefined): string {
  if (!iso) return '—'
  const date = new Date(iso)
  if (Number.isNaN(date.getTime())) return iso
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`
}

export function shortDigest(digest: string): string {
  const [algorithm, hex] = digest.split(':')
  return hex ? `${algorithm}:${hex.slice(0, 12)}` : digest
}

export function pullLine(host: string, repository: string, reference: string): string {
  return `docker pull ${host}/${repository}${reference.includes(':') ? '@' : ':'}${reference}`
}
