// The routing strategy named by config, provisioned: the one place that turns routing.strategy into an object.
import type { RoutingConfig } from './section.js'
import type { Operation } from '../registry/classify.js'
import type { Forwarder } from '../forward/forward.js'
import { MirrorWriter, type BranchFailure } from '../forward/mirror.js'
import type { UploadTokens } from '../uploads/token.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { ByRepository } from './by-repository.js'
import { Mirror } from './mirror.js'
import { SharedStorage } from './shared.js'
import { SignedUploads } from './signed-uploads.js'
import { SingleUpstream } from './single.js'
import { UpstreamChoice, type RoutingStrategy } from './strategy.js'

export interface StrategyDeps {
  upstreams: readonly Upstream[]
  /** Health as routing reads it: a down upstream is skipped, one not checked yet is used. */
  isAvailable: (upstream: Upstream) => boolean
  /** The signer of upload URLs, asked for only by strategies that pin uploads to upstreams. */
  uploadTokens: () => UploadTokens
  forwarder: Forwarder
  /** Each upstream that failed its part of a mirrored write. */
  onMirrorBranchFailure: (operation: Operation, repository: string | undefined, failure: BranchFailure) => void
}

/** Which strategies pin uploads to upstreams through signed upload URLs (and so need routing.secret). */
const SIGNS_UPLOADS: Record<RoutingConfig['strategy'], boolean> = { '': false, shared: false, 'by-repository': true, mirror: true }

export function signsUploadUrls(strategy: RoutingConfig['strategy']): boolean {
  return SIGNS_UPLOADS[strategy]
}

export function createStrategy(config: RoutingConfig, deps: StrategyDeps): RoutingStrategy {
  const upstreams = new UpstreamChoice(deps.upstreams, deps.isAvailable)
  switch (config.strategy) {
    case '':
      return new SingleUpstream(upstreams)
    case 'shared':
      return new SharedStorage(upstreams, config.balance)
    case 'by-repository':
      return new ByRepository(upstreams, new SignedUploads(deps.uploadTokens(), upstreams))
    case 'mirror': {
      const tokens = deps.uploadTokens()
      const writer = new MirrorWriter({
        forwarder: deps.forwarder,
        tokens,
        require: config.mirror.require,
        isAvailable: deps.isAvailable,
        onBranchFailure: deps.onMirrorBranchFailure,
      })
      return new Mirror(upstreams, new SignedUploads(tokens, upstreams), config.mirror.require, writer)
    }
  }
}
