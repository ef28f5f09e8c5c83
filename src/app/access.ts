// Groups and grants made in the web UI: kept in the store, read again when another instance announces a change (shared.redis) or every auth.grants_refresh.
import type { Config } from './config.js'
import type { Logger } from '../observe/log.js'
import type { StoreEngine } from '../store/engine.js'
import type { SharedState } from '../shared/index.js'
import type { Shutdown } from './shutdown.js'
import { AccessGrants, type AuthSetup } from '../auth/index.js'
import type { UiAccessAdmin } from '../ui/index.js'
import type { AdminApi } from '../admin/api.js'
import { registerAccessRoutes, registerGrantRoutes, type GrantAuditHook } from '../admin/access-routes.js'

/** The bus topic a change is announced on: every other instance reloads. */
export const GRANTS_TOPIC = 'access.grants'

export async function startAccessGrants(config: Config, store: StoreEngine, shared: SharedState, log: Logger, shutdown: Shutdown): Promise<AccessGrants> {
  const grants = new AccessGrants(store, { onChange: () => shared.bus.publish(GRANTS_TOPIC, 'changed') })
  await grants.ready
  const reload = (why: string): void => {
    grants.reload().catch((error: unknown) => log.error({ err: error instanceof Error ? error.message : String(error), why }, 'access grants: reloading from the store failed; keeping the ones loaded before'))
  }
  if (shared.engine !== 'local') {
    // Announced at once (Redis, or the primary of server.workers); a reconnect may have missed announcements, so it reloads too.
    const unsubscribe = shared.bus.subscribe(GRANTS_TOPIC, () => reload('changed on another instance'))
    const unresync = shared.bus.onResync(() => reload('shared state reconnected'))
    shutdown.defer(() => {
      unsubscribe()
      unresync()
    })
  } else {
    // No bus between instances: another instance sharing the store (PostgreSQL) is seen within auth.grants_refresh.
    const refresh = grants.startRefresh(config.auth.grants_refresh, (error) =>
      log.error({ err: error instanceof Error ? error.message : String(error) }, 'access grants: reloading from the store failed; keeping the ones loaded before'))
    shutdown.defer(() => refresh.stop())
  }
  log.info({ groups: grants.groups.length, grants: grants.grants.length, engine: store.kind }, 'access grants loaded')
  return grants
}

/** The "Users & access" page's data and the admin API's explanation. */
export function accessAdmin(config: Config, grants: AccessGrants, auth: AuthSetup, shared: SharedState): UiAccessAdmin {
  const explain: UiAccessAdmin['explain'] = (who, repository, clientIp) => auth.acl.explain(who, repository, clientIp)
  return {
    grants,
    ...(auth.localUsers ? { users: auth.localUsers } : {}),
    configRules: config.auth.acl,
    configGroups: config.auth.groups,
    propagation: shared.engine === 'redis' ? 'at once on every instance (shared.redis)' : shared.engine === 'cluster' ? 'at once on every worker (server.workers)' : `on other instances within ${Math.round(config.auth.grants_refresh / 1000)}s (auth.grants_refresh)`,
    explain,
  }
}

/** GET /admin/api/access/explain, and /admin/api/access/groups and /grants (portier access), for administrators (and scripts). */
export function registerAccessAdminRoutes(adminApi: AdminApi, auth: AuthSetup, grants: AccessGrants, audit: GrantAuditHook): void {
  registerAccessRoutes(adminApi, { explain: (who, repository, clientIp) => auth.acl.explain(who, repository, clientIp), ...(auth.groupsOf ? { groupsOf: auth.groupsOf } : {}) })
  registerGrantRoutes(adminApi, { grants, audit })
}
