// The retention engine with an injected clock, immutable-tag rules, tag patterns and the config sections that feed them.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, type ConfigProblem } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'
import { formatAge, RetentionPolicy, type RepositoryPlan, type TagState } from '../../src/housekeeping/retention.js'
import type { RetentionRule } from '../../src/housekeeping/retention-section.js'
import { ImmutableTags } from '../../src/housekeeping/immutable-tags.js'
import { compileTagPattern, tagPatternProblem } from '../../src/housekeeping/tag-patterns.js'

const DAY = 86_400_000
const NOW = Date.UTC(2026, 0, 31, 12, 0, 0)
const daysAgo = (days: number): number => NOW - days * DAY

function rule(partial: Partial<RetentionRule> & { repositories: string }): RetentionRule {
  return { keep_last: 0, keep_tags: [], delete_older_than: 0, keep_pulled_within: 0, delete_untagged: false, ...partial }
}

const verdicts = (plan: RepositoryPlan): Record<string, string> => Object.fromEntries(plan.tags.map((tag) => [tag.tag, tag.verdict]))
const reasons = (plan: RepositoryPlan): Record<string, string> => Object.fromEntries(plan.tags.map((tag) => [tag.tag, tag.reason]))

t.test('tag patterns: * any run, ? one character, the rest literal', async (t) => {
  t.ok(compileTagPattern('v*').test('v1.2.3'))
  t.ok(compileTagPattern('v*').test('v'))
  t.notOk(compileTagPattern('v*').test('xv1'))
  t.ok(compileTagPattern('release-?').test('release-1'))
  t.notOk(compileTagPattern('release-?').test('release-10'))
  t.ok(compileTagPattern('1.0').test('1.0'))
  t.notOk(compileTagPattern('1.0').test('1x0'), 'a dot is a dot')
  t.equal(tagPatternProblem('v*'), undefined)
  t.match(tagPatternProblem('v/1'), /tag characters/)
  t.match(tagPatternProblem(''), /empty/)
})

t.test('immutable rules: repository glob and tag patterns, the first matching rule named', async (t) => {
  const rules = new ImmutableTags([
    { repositories: 'prod/**', tags: ['v*', 'stable'] },
    { repositories: 'team/*', tags: ['release-*'] },
  ])
  t.same(rules.ruleFor('prod/app', 'v1')?.index, 0)
  t.same(rules.ruleFor('prod/a/b', 'stable')?.index, 0, '** crosses components')
  t.equal(rules.ruleFor('prod/app', 'latest'), undefined, 'a tag no pattern matches')
  t.equal(rules.ruleFor('dev/app', 'v1'), undefined, 'a repository no rule matches')
  t.same(rules.ruleFor('team/x', 'release-2')?.index, 1)
  t.equal(rules.ruleFor('team/x/y', 'release-2'), undefined, '* stays within a component')
  t.ok(rules.coversRepository('prod/app'))
  t.notOk(rules.coversRepository('dev/app'))
  t.ok(new ImmutableTags([]).empty)
})

t.test('keep rules are ORed: each tag kept by any of them, the rest deleted, with reasons', async (t) => {
  const policy = new RetentionPolicy({
    now: NOW,
    rules: [rule({ repositories: 'ci/**', keep_last: 2, keep_tags: ['latest', 'v*'], delete_older_than: 30 * DAY, keep_pulled_within: 7 * DAY })],
  })
  const tags: TagState[] = [
    { tag: 'b100', digest: 'sha256:100', pushedAt: daysAgo(1) }, // among the last 2
    { tag: 'b99', digest: 'sha256:99', pushedAt: daysAgo(2) }, // among the last 2
    { tag: 'b98', digest: 'sha256:98', pushedAt: daysAgo(10) }, // younger than 30d
    { tag: 'b50', digest: 'sha256:50', pushedAt: daysAgo(40), pulledAt: daysAgo(3) }, // pulled within 7d
    { tag: 'b40', digest: 'sha256:40', pushedAt: daysAgo(40), pulledAt: daysAgo(20) }, // deleted
    { tag: 'b30', digest: 'sha256:30', pushedAt: daysAgo(45) }, // deleted, never pulled
    { tag: 'v1.0', digest: 'sha256:v1', pushedAt: daysAgo(400) }, // keep_tags
    { tag: 'latest', digest: 'sha256:100', pushedAt: daysAgo(1) },
    { tag: 'old-seen', digest: 'sha256:seen', firstSeenAt: daysAgo(60) }, // pushed before Portier: first seen counts
    { tag: 'unknown', digest: 'sha256:unknown' }, // never seen: kept
  ]
  const plan = policy.planFor({ repository: 'ci/app', tags })
  t.equal(plan.rule, 0)
  t.same(verdicts(plan), {
    b100: 'keep', b99: 'keep', b98: 'keep', b50: 'keep', b40: 'delete', b30: 'delete', 'v1.0': 'keep', latest: 'keep', 'old-seen': 'delete', unknown: 'keep',
  })
  const why = reasons(plan)
  t.equal(why['b100'], 'kept: among the last 2 pushed')
  t.equal(why['b99'], 'kept: pushed 2d ago (not older than 30d)', 'latest (pushed with b100) is the second of the last 2: keep_last counts tags')
  t.equal(why['b98'], 'kept: pushed 10d ago (not older than 30d)')
  t.equal(why['b50'], 'kept: pulled 3d ago (within 7d)')
  t.equal(why['b40'], 'deleted: pushed 40d ago (older than 30d), not pulled within 7d, not among the last 2 pushed, matches no keep_tags')
  t.equal(why['b30'], 'deleted: pushed 45d ago (older than 30d), never pulled, not among the last 2 pushed, matches no keep_tags')
  t.equal(why['v1.0'], 'kept: matches keep_tags "v*"')
  t.equal(why['latest'], 'kept: matches keep_tags "latest"')
  t.equal(why['unknown'], 'kept: push time unknown (not yet seen by Portier)')
  t.same(plan.deletions.map((entry) => entry.digest), ['sha256:40', 'sha256:30', 'sha256:seen'], 'one DELETE per digest')
})

t.test('the clock decides: the same tags a day later', async (t) => {
  const rules = [rule({ repositories: 'app', delete_older_than: 30 * DAY })]
  const tags: TagState[] = [{ tag: 'a', digest: 'sha256:a', pushedAt: daysAgo(29.5) }]
  t.equal(new RetentionPolicy({ now: NOW, rules }).planFor({ repository: 'app', tags }).tags[0]?.verdict, 'keep', '29.5 days old: kept')
  t.equal(new RetentionPolicy({ now: NOW + DAY, rules }).planFor({ repository: 'app', tags }).tags[0]?.verdict, 'delete', '30.5 days old: deleted')
})

t.test('a digest a kept tag points to is never deleted, with any of its tags', async (t) => {
  const policy = new RetentionPolicy({ now: NOW, rules: [rule({ repositories: '**', keep_last: 1 })] })
  const plan = policy.planFor({
    repository: 'x',
    tags: [
      { tag: 'new', digest: 'sha256:shared', pushedAt: daysAgo(1) },
      { tag: 'old', digest: 'sha256:shared', pushedAt: daysAgo(50) },
      { tag: 'older', digest: 'sha256:gone', pushedAt: daysAgo(60) },
      { tag: 'oldest', digest: 'sha256:gone', pushedAt: daysAgo(70) },
    ],
  })
  t.same(verdicts(plan), { new: 'keep', old: 'keep', older: 'delete', oldest: 'delete' })
  t.match(reasons(plan)['old'], /^kept: its manifest is also tagged new, which is kept/)
  t.same(plan.deletions, [{ repository: 'x', digest: 'sha256:gone', tags: ['older', 'oldest'], reason: 'older, oldest: deleted: pushed 60d ago, not among the last 1 pushed' }])
})

t.test('immutable tags are never deleted; the first matching rule governs; no rule, nothing touched', async (t) => {
  const immutable = new ImmutableTags([{ repositories: 'prod/**', tags: ['v*'] }])
  const policy = new RetentionPolicy({
    now: NOW,
    rules: [rule({ repositories: 'prod/keep-all', keep_tags: ['*'] }), rule({ repositories: 'prod/**', delete_older_than: DAY })],
    isImmutable: (repository, tag) => immutable.isImmutable(repository, tag),
  })
  const tags: TagState[] = [
    { tag: 'v1', digest: 'sha256:v1', pushedAt: daysAgo(100) },
    { tag: 'nightly', digest: 'sha256:n', pushedAt: daysAgo(100) },
  ]
  const app = policy.planFor({ repository: 'prod/app', tags })
  t.equal(app.rule, 1)
  t.same(verdicts(app), { v1: 'keep', nightly: 'delete' })
  t.equal(reasons(app)['v1'], 'kept: immutable tag (immutable_tags)')
  const keepAll = policy.planFor({ repository: 'prod/keep-all', tags })
  t.equal(keepAll.rule, 0, 'the first rule whose glob matches, not the most specific')
  t.same(verdicts(keepAll), { v1: 'keep', nightly: 'keep' })
  const none = policy.planFor({ repository: 'dev/app', tags })
  t.equal(none.rule, undefined)
  t.same(verdicts(none), { v1: 'keep', nightly: 'keep' })
  t.same(none.deletions, [])
})

t.test('a rule with no tag conditions keeps every tag; delete_untagged deletes unreferenced untagged manifests', async (t) => {
  const policy = new RetentionPolicy({ now: NOW, rules: [rule({ repositories: 'x', delete_untagged: true })] })
  const plan = policy.planFor({
    repository: 'x',
    tags: [{ tag: 'a', digest: 'sha256:a', pushedAt: daysAgo(1000) }],
    untagged: [{ digest: 'sha256:loose' }, { digest: 'sha256:child', referenced: true }, { digest: 'sha256:a' }],
  })
  t.same(verdicts(plan), { a: 'keep' })
  t.equal(reasons(plan)['a'], 'kept: rule 0 sets no tag conditions')
  t.same(plan.deletions, [{ repository: 'x', digest: 'sha256:loose', tags: [], reason: 'deleted: untagged (delete_untagged)' }])
})

t.test('keep_last ranks by push time, ties by name, whatever order the registry lists', async (t) => {
  const policy = new RetentionPolicy({ now: NOW, rules: [rule({ repositories: 'x', keep_last: 2 })] })
  const tags: TagState[] = [
    { tag: 'c', digest: 'sha256:c', pushedAt: daysAgo(5) },
    { tag: 'a', digest: 'sha256:a', pushedAt: daysAgo(5) },
    { tag: 'b', digest: 'sha256:b', pushedAt: daysAgo(5) },
  ]
  t.same(verdicts(policy.planFor({ repository: 'x', tags })), { c: 'delete', a: 'keep', b: 'keep' })
  t.same(verdicts(policy.planFor({ repository: 'x', tags: [...tags].reverse() })), { c: 'delete', a: 'keep', b: 'keep' })
})

t.test('ages print in days, hours, minutes', async (t) => {
  t.equal(formatAge(40 * DAY), '40d')
  t.equal(formatAge(1.5 * DAY), '1.5d')
  t.equal(formatAge(2 * DAY + 5000), '2d', 'seconds past a whole day read as the day')
  t.equal(formatAge(10.9 * DAY), '10d')
  t.equal(formatAge(3 * 3_600_000), '3h')
  t.equal(formatAge(90_000), '1m')
})

t.test('config: immutable_tags and retention load, bad patterns name the key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-retention-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'portier.yaml')
  writeFileSync(file, [
    'upstreams: [{ url: "http://127.0.0.1:5000" }]',
    'immutable_tags: [{ repositories: "prod/**", tags: ["v*"] }]',
    'retention: { schedule: 24h, rules: [{ repositories: "ci/**", keep_last: 5, delete_older_than: 30d, keep_pulled_within: 7d }] }',
  ].join('\n'))
  const loaded = loadConfig({ file, env: {} }).config
  t.same(loaded.immutable_tags, [{ repositories: 'prod/**', tags: ['v*'] }])
  t.equal(loaded.retention.schedule, '24h')
  t.same(loaded.retention.rules[0], { repositories: 'ci/**', keep_last: 5, keep_tags: [], delete_older_than: 30 * DAY, keep_pulled_within: 7 * DAY, delete_untagged: false })

  writeFileSync(file, [
    'upstreams: [{ url: "http://127.0.0.1:5000" }]',
    'immutable_tags: [{ repositories: "Prod/**", tags: ["v/1"] }]',
    'retention: { schedule: "25:00", rules: [{ repositories: "ci/**", keep_last: -1 }] }',
  ].join('\n'))
  let problems: ConfigProblem[] = []
  try {
    loadConfig({ file, env: {} })
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    problems = error.problems
  }
  const keys = problems.map((problem) => problem.key)
  t.ok(keys.includes('immutable_tags[0].repositories'), 'a repository glob no name can match')
  t.ok(keys.includes('immutable_tags[0].tags[0]'), 'a tag pattern with a slash')
  t.ok(keys.includes('retention.rules[0].keep_last'), 'a negative count')
  t.ok(keys.includes('retention.schedule'), 'a time of day that does not exist')
})

t.test('config: a retention rule an earlier one shadows is refused, naming both', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-retention-shadow-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'portier.yaml')
  const problemsOf = (rules: string): ConfigProblem[] => {
    writeFileSync(file, `upstreams: [{ url: "http://127.0.0.1:5000" }]\nretention: { rules: ${rules} }\n`)
    try {
      loadConfig({ file, env: {} })
      return []
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      return error.problems
    }
  }
  const shadowed = problemsOf('[{ repositories: "**", keep_last: 5 }, { repositories: "ci/**", keep_last: 1 }]')
  t.same(shadowed.map((problem) => problem.key), ['retention.rules[1].repositories'])
  t.match(shadowed[0]?.expected, /retention\.rules\[0\] "\*\*"/)
  t.same(problemsOf('[{ repositories: "ci/**", keep_last: 1 }, { repositories: "ci/**", keep_last: 2 }]').map((problem) => problem.key), ['retention.rules[1].repositories'], 'the same glob twice')
  t.same(problemsOf('[{ repositories: "ci/**", keep_last: 1 }, { repositories: "**", keep_last: 5 }]'), [], 'specific first, catch-all last: fine')
})
