// The machine and tool versions a run was measured with, for the report's header.
import { cpus, release, totalmem } from 'node:os'
import { run } from '../../test/helpers/exec.js'

async function firstLine(command: string, args: string[]): Promise<string> {
  try {
    const result = await run(command, args, { timeoutMs: 10_000 })
    return `${result.stdout}${result.stderr}`.trim().split('\n')[0]?.trim() ?? '?'
  } catch {
    return 'not installed'
  }
}

export async function describeMachine(): Promise<string[]> {
  const model = cpus()[0]?.model.trim() ?? '?'
  return [
    `${cpus().length} cores (${model}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${release()}`,
    `Node ${process.version}; ${await firstLine('nginx', ['-v'])}; ${await firstLine('docker-registry', ['--version'])}`,
    `${(await firstLine('curl', ['--version'])).split(' ').slice(0, 2).join(' ')}; ${await firstLine('skopeo', ['--version'])}; ${await firstLine('wrk', ['-v'])}; ${(await firstLine('ab', ['-V'])).replace('This is ', '')}`,
  ]
}
