// Summarizes a V8 .cpuprofile (node --cpu-prof): the functions with the most self time, as a markdown table.
// Run: node --import=tsx bench/profile-summary.ts FILE.cpuprofile [top N]
import { readFile } from 'node:fs/promises'
import { basename } from 'node:path'
import { fileURLToPath } from 'node:url'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
}

interface ProfileNode {
  id: number
  callFrame: CallFrame
}

interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

export interface SelfTime {
  name: string
  where: string
  ms: number
  /** Share of the busy (non-idle) time. */
  share: number
}

export interface ProfileSummary {
  busyMs: number
  idleMs: number
  top: SelfTime[]
  /** Self time summed by package (node_modules), Portier file (dist/) or Node internals. */
  modules: Array<{ module: string; ms: number; share: number }>
}

function moduleOf(frame: CallFrame): string {
  const url = frame.url
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : 'native'
  const modules = url.lastIndexOf('/node_modules/')
  if (modules >= 0) {
    const parts = url.slice(modules + 14).split('/')
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0] ?? url
  }
  if (url.includes('/dist/')) return url.slice(url.lastIndexOf('/dist/') + 1)
  return url.startsWith('node:') || !url.includes('/') ? 'node internals' : url
}

function where(frame: CallFrame): string {
  if (!frame.url) return ''
  const file = frame.url.startsWith('file://') ? fileURLToPath(frame.url) : frame.url
  const short = file.includes('/node_modules/') ? file.slice(file.lastIndexOf('/node_modules/') + 14) : file.includes('/dist/') ? file.slice(file.lastIndexOf('/dist/') + 1) : basename(file)
  return `${short}:${frame.lineNumber + 1}`
}

/** Self time per function (same name and location merged), busiest first. */
export function summarize(profile: CpuProfile, topN = 15): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const selfUs = new Map<string, { name: string; where: string; us: number }>()
  const moduleUs = new Map<string, number>()
  let idleUs = 0
  let busyUs = 0
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0
    const frame = byId.get(id)?.callFrame
    if (!frame) return
    if (frame.functionName === '(idle)') {
      idleUs += delta
      return
    }
    busyUs += delta
    const name = frame.functionName || '(anonymous)'
    const location = where(frame)
    const key = `${name}@${location}`
    const entry = selfUs.get(key) ?? { name, where: location, us: 0 }
    entry.us += delta
    selfUs.set(key, entry)
    const module = moduleOf(frame)
    moduleUs.set(module, (moduleUs.get(module) ?? 0) + delta)
  })
  const top = [...selfUs.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((entry) => ({ name: entry.name, where: entry.where, ms: entry.us / 1000, share: busyUs ? entry.us / busyUs : 0 }))
  const modules = [...moduleUs]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 10)
    .map(([module, us]) => ({ module, ms: us / 1000, share: busyUs ? us / busyUs : 0 }))
  return { busyMs: busyUs / 1000, idleMs: idleUs / 1000, top, modules }
}

export async function summarizeFile(file: string, topN = 15): Promise<ProfileSummary> {
  return summarize(JSON.parse(await readFile(file, 'utf8')) as CpuProfile, topN)
}

export function summaryMarkdown(summary: ProfileSummary): string {
  const lines = [
    `busy ${(summary.busyMs / 1000).toFixed(2)} s, idle ${(summary.idleMs / 1000).toFixed(2)} s (main thread)`,
    '',
    '| self time | share of busy | function | where |',
    '|---:|---:|---|---|',
    ...summary.top.map((entry) => `| ${entry.ms.toFixed(0)} ms | ${(entry.share * 100).toFixed(1)} % | \`${entry.name}\` | ${entry.where} |`),
    '',
    '| self time | share of busy | module |',
    '|---:|---:|---|',
    ...summary.modules.map((entry) => `| ${entry.ms.toFixed(0)} ms | ${(entry.share * 100).toFixed(1)} % | ${entry.module} |`),
  ]
  return lines.join('\n')
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2]
  if (!file) {
    console.error('usage: bench/profile-summary.ts FILE.cpuprofile [top N]')
    process.exit(2)
  }
  console.log(summaryMarkdown(await summarizeFile(file, Number(process.argv[3] ?? 15))))
}
