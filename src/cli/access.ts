// `portier access`: the groups and grants kept in the store (the web UI's "Users & access"), and why a user may do what, through the admin API.
import { adminClient, adminClientOptions, adminClientUsage } from './admin-client.js'
import { helpOption, parseCommand, UsageError } from './args.js'

export const usage = `Usage: portier access groups [--json]
       portier access group-create NAME [--member USER…] [--json]
       portier access group-members NAME --member USER [--member USER…] [--json]
       portier access group-members NAME --no-members [--json]
       portier access group-delete NAME [--json]
       portier access grants [--json]
       portier access grant-create (--for-user USER | --for-group GROUP) --repository GLOB
                                   --actions pull,push,delete [--json]
       portier access grant-delete ID [--json]
       portier access explain --for USER --repository NAME [--json]

Groups and grants are kept in the store, next to auth.acl of the configuration (read-only here):
the same ones the web UI's "Users & access" page changes. Other instances see a change at once
with shared.redis, else within auth.grants_refresh. Every change is in the audit trail.
  groups          the groups: name, members, who changed them last and when
  group-create    make a group, with these members (none when no --member)
  group-members   replace the group's members with exactly these
  group-delete    delete a group and every grant given to it
  grants          the grants: id, subject (user or group), repository glob, actions
  grant-create    let a user or a group take actions on repositories matching GLOB
  grant-delete    delete the grant with this id (see portier access grants)
  explain         what USER may do on repository NAME, and through which rule or grant

Options:
  --member USER       a member of the group; repeat for more
  --no-members        group-members: leave the group without members
  --for-user USER     grant-create: the user the grant is for
  --for-group GROUP   grant-create: the group the grant is for
  --repository GLOB   a repository name or glob as in auth.acl, e.g. team/* or team/** (for
                      explain: one repository name)
  --actions LIST      comma-separated: pull, push, delete
  --for USER          explain: the user to explain
  --json              print the admin API's answer as JSON
  -h, --help          this text

(-u/--user is the administrator who calls the admin API, as for every admin command.)

${adminClientUsage}`

const ACTIONS = ['groups', 'group-create', 'group-members', 'group-delete', 'grants', 'grant-create', 'grant-delete', 'explain'] as const
type Action = (typeof ACTIONS)[number]

const isAction = (value: string | undefined): value is Action => (ACTIONS as readonly string[]).includes(value ?? '')

const text = (value: unknown): string => (value === null || value === undefined ? '-' : typeof value === 'string' ? value : JSON.stringify(value))

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((cells) => (cells[column] ?? '').length))) ?? []
  return rows.map((cells) => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()).join('\n') + '\n'
}

function listOf(body: unknown, key: string): Array<Record<string, unknown>> {
  const list = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[key] : undefined
  return Array.isArray(list) ? list.filter((item): item is Record<string, unknown> => typeof item === 'object' && item !== null) : []
}

const names = (value: unknown): string => (Array.isArray(value) && value.length > 0 ? value.map(text).join(',') : '-')

function groupsListing(body: unknown): string {
  const groups = listOf(body, 'groups')
  if (groups.length === 0) return 'no groups\n'
  return table([['NAME', 'MEMBERS', 'UPDATED BY', 'UPDATED AT'], ...groups.map((group) => [text(group.name), names(group.members), text(group.updatedBy), text(group.updatedAt)])])
}

function grantsListing(body: unknown): string {
  const grants = listOf(body, 'grants')
  if (grants.length === 0) return 'no grants\n'
  return table([
    ['ID', 'SUBJECT', 'REPOSITORY', 'ACTIONS', 'CREATED BY', 'CREATED AT'],
    ...grants.map((grant) => [text(grant.id), `${text(grant.kind)} ${text(grant.subject)}`, text(grant.repository), names(grant.actions), text(grant.createdBy), text(grant.createdAt)]),
  ])
}

function explanation(body: unknown): string {
  const answer = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>
  const actions = listOf(answer, 'actions')
  const lines = actions.map((entry) => {
    const how = entry.granted === true ? (Array.isArray(entry.via) ? entry.via.map(text).join('; ') : '') : text(entry.reason)
    return `  ${text(entry.action).padEnd(7)} ${entry.granted === true ? 'granted' : 'denied '}  ${how}`.trimEnd()
  })
  return `${text(answer.user)} on ${text(answer.repository)} (from ${text(answer.clientIp)}):\n${lines.join('\n')}\n`
}

/** The admin API call an action makes: what it checks of the arguments first. Exported for the unit tests. */
export function accessRequest(action: Action, positionals: string[], values: AccessValues): { method: string; path: string; body?: Record<string, unknown> } {
  const name = positionals[1]
  const extra = positionals[action === 'groups' || action === 'grants' || action === 'explain' || action === 'grant-create' ? 1 : 2]
  if (extra !== undefined) throw new UsageError(`unexpected argument ${extra}`, 'access')
  const members = values.member ?? []
  switch (action) {
    case 'groups':
      return { method: 'GET', path: '/admin/api/access/groups' }
    case 'grants':
      return { method: 'GET', path: '/admin/api/access/grants' }
    case 'group-create':
      if (!name) throw new UsageError('group-create needs the group name', 'access')
      return { method: 'POST', path: '/admin/api/access/groups', body: { name, members } }
    case 'group-members':
      if (!name) throw new UsageError('group-members needs the group name', 'access')
      if (members.length === 0 && !values['no-members']) throw new UsageError('group-members needs --member USER (repeat for more), or --no-members to empty the group', 'access')
      if (members.length > 0 && values['no-members']) throw new UsageError('--member and --no-members exclude each other', 'access')
      return { method: 'PUT', path: '/admin/api/access/groups', body: { name, members } }
    case 'group-delete':
      if (!name) throw new UsageError('group-delete needs the group name', 'access')
      return { method: 'DELETE', path: `/admin/api/access/groups?name=${encodeURIComponent(name)}` }
    case 'grant-delete':
      if (!name) throw new UsageError('grant-delete needs the grant id (see portier access grants)', 'access')
      return { method: 'DELETE', path: `/admin/api/access/grants?id=${encodeURIComponent(name)}` }
    case 'grant-create': {
      const user = values['for-user']
      const group = values['for-group']
      if ((user === undefined) === (group === undefined)) throw new UsageError('grant-create needs either --for-user USER or --for-group GROUP', 'access')
      if (!values.repository) throw new UsageError('grant-create needs --repository GLOB, e.g. team/*', 'access')
      if (!values.actions) throw new UsageError('grant-create needs --actions, e.g. pull,push', 'access')
      const actions = values.actions.split(',').map((part) => part.trim()).filter((part) => part !== '')
      return {
        method: 'POST',
        path: '/admin/api/access/grants',
        body: { kind: user !== undefined ? 'user' : 'group', subject: user ?? group, repository: values.repository, actions },
      }
    }
    case 'explain':
      if (!values.for) throw new UsageError('explain needs --for USER', 'access')
      if (!values.repository) throw new UsageError('explain needs --repository NAME', 'access')
      return { method: 'GET', path: `/admin/api/access/explain?user=${encodeURIComponent(values.for)}&repository=${encodeURIComponent(values.repository)}` }
  }
}

export interface AccessValues {
  member?: string[] | undefined
  'no-members'?: boolean | undefined
  'for-user'?: string | undefined
  'for-group'?: string | undefined
  repository?: string | undefined
  actions?: string | undefined
  for?: string | undefined
}

export const accessOptions = {
  ...adminClientOptions,
  member: { type: 'string', multiple: true },
  'no-members': { type: 'boolean' },
  'for-user': { type: 'string' },
  'for-group': { type: 'string' },
  repository: { type: 'string' },
  actions: { type: 'string' },
  for: { type: 'string' },
  json: { type: 'boolean' },
  help: helpOption,
} as const

/** Parses the arguments into the action and its admin API call (usage errors before any network). */
export function parseAccess(args: string[]): { help: true } | { help: false; action: Action; json: boolean; request: ReturnType<typeof accessRequest>; values: ReturnType<typeof parseCommand<typeof accessOptions>>['values'] } {
  const { values, positionals } = parseCommand('access', args, accessOptions, 3)
  if (values.help) return { help: true }
  const action = positionals[0]
  if (!isAction(action)) throw new UsageError(action ? `unknown action ${action} (${ACTIONS.join(', ')})` : `access needs one of ${ACTIONS.join(', ')}`, 'access')
  return { help: false, action, json: values.json === true, request: accessRequest(action, positionals, values), values }
}

export async function access(args: string[]): Promise<number> {
  const parsed = parseAccess(args)
  if (parsed.help) {
    process.stdout.write(usage)
    return 0
  }
  const { action, request } = parsed
  const client = await adminClient(parsed.values, 'access')
  const answer = await client.call(request.method, request.path, request.body)
  if (!answer.ok) return answer.exitCode
  if (parsed.json) {
    process.stdout.write(`${JSON.stringify(answer.body, null, 2)}\n`)
    return 0
  }
  const made = (typeof answer.body === 'object' && answer.body !== null ? answer.body : {}) as Record<string, unknown>
  switch (action) {
    case 'groups':
      process.stdout.write(groupsListing(answer.body))
      break
    case 'grants':
      process.stdout.write(grantsListing(answer.body))
      break
    case 'explain':
      process.stdout.write(explanation(answer.body))
      break
    case 'group-create':
    case 'group-members':
      process.stdout.write(`${action === 'group-create' ? 'created' : 'updated'} group ${text(made.name)}: ${names(made.members) === '-' ? 'no members' : names(made.members)}\n`)
      break
    case 'group-delete':
      process.stdout.write(`deleted group ${text(made.name)}${typeof made.grantsDeleted === 'number' && made.grantsDeleted > 0 ? ` and its ${made.grantsDeleted} grant${made.grantsDeleted === 1 ? '' : 's'}` : ''}\n`)
      break
    case 'grant-create':
    case 'grant-delete':
      process.stdout.write(`${action === 'grant-create' ? 'created' : 'deleted'} grant ${text(made.id)}: ${text(made.kind)} ${text(made.subject)} ${text(made.repository)} ${names(made.actions)}\n`)
      break
  }
  return 0
}
