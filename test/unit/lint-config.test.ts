// The linter's config: in src/ a `void promise` is a finding (issue 13's admin crash), tap's t.test is not; proved on a small program with the project's own rule settings.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ESLint, type Linter } from 'eslint'
import tseslint from 'typescript-eslint'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const RULE = '@typescript-eslint/no-floating-promises'

/** The rule's severity and options as eslint.config.js sets them for `file`. */
async function ruleFor(file: string): Promise<Linter.RuleEntry | undefined> {
  const config = (await new ESLint({ cwd: root }).calculateConfigForFile(join(root, file))) as Linter.Config | undefined
  return config?.rules?.[RULE]
}

t.test('src/: no-floating-promises is an error and `void` does not silence it', async (t) => {
  const entry = await ruleFor('src/observe/admin.ts')
  t.match(entry, [2, { ignoreVoid: false }])
  t.match(await ruleFor('src/errors/catalogue.ts'), [2, { ignoreVoid: false }], 'every src file, not one')
  const tests = await ruleFor('test/unit/admin.test.ts')
  t.match(tests, [2, { allowForKnownSafeCalls: [{ from: 'package', package: '@tapjs/test', name: ['test', 'only', 'skip', 'todo'] }] }], 'tests: tap subtests are not floating promises')

  // The same rule settings on a small program: the pattern that ended the process is reported, the handled forms are not.
  const dir = mkdtempSync(join(tmpdir(), 'portier-lint-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, target: 'ES2022', module: 'NodeNext', types: [] }, include: ['*.ts'] }))
  writeFileSync(
    join(dir, 'probe.ts'),
    [
      'export async function admin(): Promise<void> {}',
      'export function unhandled(): void {',
      '  void admin()',
      '}',
      'export function handled(): void {',
      '  admin().catch(() => undefined)',
      '}',
      'export async function awaited(): Promise<void> {',
      '  await admin()',
      '}',
      '',
    ].join('\n'),
  )
  const eslint = new ESLint({
    cwd: dir,
    overrideConfigFile: true,
    overrideConfig: {
      files: ['**/*.ts'],
      languageOptions: { parser: tseslint.parser, parserOptions: { project: './tsconfig.json', tsconfigRootDir: dir } },
      plugins: { '@typescript-eslint': tseslint.plugin as unknown as NonNullable<Linter.Config['plugins']>[string] },
      rules: { [RULE]: entry ?? 'off' },
    },
  })
  const [result] = await eslint.lintFiles(['probe.ts'])
  const findings = (result?.messages ?? []).map((message) => ({ rule: message.ruleId, line: message.line }))
  t.same(findings, [{ rule: RULE, line: 3 }], 'only `void admin()` is reported')
})
