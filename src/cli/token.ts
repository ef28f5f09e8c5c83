// `portier token create|list|revoke`: access tokens and robot accounts of the running gateway, through its admin API.
import { parseDuration } from '../config/units.js'
import { adminClient, adminClientOptions, adminClientUsage } from './admin-client.js'
import { helpOption, parseCommand, UsageError } from './args.js'

export const usage = `Usage: portier token create --name NAME --scope SCOPE [--scope SCOPE…] [--expires DURATION|never]
                          [--robot] [--owner USER] [--json]
       portier token list [--owner USER] [--json]
       portier token revoke ID

Access tokens are passwords for docker login, podman login and skopeo (--creds USER:TOKEN), held to
their own scopes: a personal token gets what the ACL grants its owner AND its scopes allow; a robot
account (--robot, user name robot$NAME) gets exactly its scopes. The token (portier_…) is printed
once; the gateway keeps only its SHA-256 (in SQLite, or PostgreSQL shared by several instances).
Revoking takes effect at the next request (on every instance with shared.redis).
  create   make a token; prints the user name to log in with and the token
  list     every token (or one owner's): id, owner, scopes, expiry, last use, state
  revoke   revoke the token with this id (tok_…)

Options:
  --name NAME         a label (personal tokens) or the robot's name (lowercase, digits, . _ -)
  --scope SCOPE       TYPE:NAME:ACTIONS, NAME a repository glob as in auth.acl, e.g.
                      'repository:team/*:pull,push' or 'registry:catalog:*'; repeat for more
  --expires DURATION  lifetime, e.g. 90d or 12h; "never" when access_tokens.max_expiry is 0
                      (default: access_tokens.default_expiry)
  --robot             a robot account instead of a personal token
  --owner USER        create a personal token for this user (default: the --user administrator)
  --json              print the admin API's answer as JSON
  -h, --help          this text

${adminClientUsage}`

interface TokenLine {
  id?: unknown
  name?: unknown
  owner?: unknown
  scopes?: unknown
  state?: unknown
  expiresAt?: unknown
  lastUsedAt?: unknown
  lastUsedFrom?: unknown
  token?: unknown
}

const text = (value: unknown): string => (value === null || value === undefined ? '-' : typeof value === 'string' ? value : JSON.stringify(value))

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((cells) => (cells[column] ?? '').length))) ?? []
  return rows.map((cells) => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()).join('\n') + '\n'
}

function listing(body: unknown): string {
  const tokens = (typeof body === 'object' && body !== null && Array.isArray((body as { tokens?: unknown }).tokens) ? (body as { tokens: TokenLine[] }).tokens : [])
  if (tokens.length === 0) return 'no tokens\n'
  return table([
    ['ID', 'NAME', 'OWNER', 'SCOPES', 'STATE', 'EXPIRES', 'LAST USED'],
    ...tokens.map((token) => [
      text(token.id), text(token.name), text(token.owner), Array.isArray(token.scopes) ? token.scopes.join(' ') : '-', text(token.state), text(token.expiresAt),
      token.lastUsedAt ? `${text(token.lastUsedAt)} from ${text(token.lastUsedFrom)}` : 'never',
    ]),
  ])
}

export async function token(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(
    'token',
    args,
    {
      ...adminClientOptions,
      name: { type: 'string' },
      scope: { type: 'string', multiple: true },
      expires: { type: 'string' },
      robot: { type: 'boolean' },
      owner: { type: 'string' },
      json: { type: 'boolean' },
      help: helpOption,
    },
    2,
  )
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const action = positionals[0]
  if (action !== 'create' && action !== 'list' && action !== 'revoke') throw new UsageError(action ? `unknown action ${action} (create, list or revoke)` : 'token needs create, list or revoke', 'token')
  let method: string
  let path = '/admin/api/tokens'
  let body: Record<string, unknown> | undefined
  if (action === 'create') {
    if (!values.name) throw new UsageError('create needs --name', 'token')
    if (!values.scope || values.scope.length === 0) throw new UsageError("create needs --scope, e.g. --scope 'repository:team/*:pull,push'", 'token')
    if (values.expires !== undefined && values.expires !== 'never' && parseDuration(values.expires) === undefined) throw new UsageError(`--expires needs a duration like 90d or "never", not ${values.expires}`, 'token')
    if (values.robot && values.owner) throw new UsageError('--owner is for personal tokens; a robot account is its own owner', 'token')
    body = { name: values.name, scopes: values.scope, robot: values.robot === true }
    if (values.expires !== undefined) body.expires = values.expires
    if (values.owner) body.owner = values.owner
    method = 'POST'
  } else if (action === 'list') {
    if (positionals.length > 1) throw new UsageError(`unexpected argument ${positionals[1] as string}`, 'token')
    method = 'GET'
    if (values.owner) path += `?owner=${encodeURIComponent(values.owner)}`
  } else {
    const id = positionals[1]
    if (!id) throw new UsageError('revoke needs the token id (tok_…; see portier token list)', 'token')
    method = 'DELETE'
    path += `?id=${encodeURIComponent(id)}`
  }
  const client = await adminClient(values, 'token')
  const answer = await client.call(method, path, body)
  if (!answer.ok) return answer.exitCode
  if (values.json) {
    process.stdout.write(`${JSON.stringify(answer.body, null, 2)}\n`)
    return 0
  }
  const made = (answer.body ?? {}) as TokenLine
  if (action === 'create') {
    process.stdout.write(
      `created ${text(made.id)} (${text(made.name)}), expires ${made.expiresAt ? text(made.expiresAt) : 'never'}\n` +
        `user:  ${text(made.owner)}\ntoken: ${text(made.token)}\n` +
        'The token is shown only now: store it (e.g. as a CI secret). Log in with\n' +
        `  docker login -u '${text(made.owner)}' --password-stdin <registry>\n`,
    )
  } else if (action === 'list') {
    process.stdout.write(listing(answer.body))
  } else {
    process.stdout.write(`revoked ${text(made.id)} (${text(made.name)}, ${text(made.owner)})\n`)
  }
  return 0
}
