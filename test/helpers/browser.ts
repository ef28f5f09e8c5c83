// Starts Debian's headless Chromium through playwright-core for UI tests, and closes it in teardown.
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Test } from 'tap'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { ROOT } from './gateway.js'

export const CHROMIUM_BIN = process.env.PORTIER_CHROMIUM_BIN ?? '/usr/bin/chromium'
/** Screenshots and other files a reviewer may want to look at after a run (git-ignored). */
export const ARTIFACTS_DIR = join(ROOT, 'test', 'artifacts', 'ui')

// playwright-core gives every launch a fresh temporary profile (--user-data-dir) and adds --no-sandbox.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

export async function browserFixture(t: Test): Promise<Browser> {
  if (!existsSync(CHROMIUM_BIN)) throw new Error(`${CHROMIUM_BIN} is missing: apt-get install chromium (npm test installs it when run as root)`)
  const browser = await chromium.launch({ executablePath: CHROMIUM_BIN, args: FLAGS, timeout: 60_000 })
  t.teardown(() => browser.close())
  return browser
}

export interface PageProblems {
  /** Uncaught errors and console errors (a CSP violation is one): a working page has none. */
  errors: string[]
  /** Every URL the page asked for. */
  urls: string[]
}

/** A context that accepts the gateway's self-signed certificate (test only), at a desktop size. */
export async function openPage(browser: Browser, viewport = { width: 1200, height: 800 }): Promise<{ context: BrowserContext; page: Page; problems: PageProblems }> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport })
  // Tests run through tsx, whose esbuild keeps function names by wrapping a named function in a __name(fn, "name")
  // call. A function handed to page.evaluate is sent as its source text, so the page needs that helper too.
  await context.addInitScript({ content: 'globalThis.__name = (target) => target' })
  const page = await context.newPage()
  page.setDefaultTimeout(20_000)
  const problems: PageProblems = { errors: [], urls: [] }
  page.on('pageerror', (error) => problems.errors.push(`pageerror: ${error.message}`))
  page.on('console', (message) => {
    // A 4xx answer the page expects (a wrong password) is logged by Chromium as a failed resource load.
    if (message.type() === 'error' && !/Failed to load resource: the server responded with a status of 4\d\d/.test(message.text())) {
      problems.errors.push(`console: ${message.text()}`)
    }
  })
  page.on('request', (request) => problems.urls.push(request.url()))
  return { context, page, problems }
}

export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(ARTIFACTS_DIR, { recursive: true })
  const path = join(ARTIFACTS_DIR, `${name}.png`)
  await page.screenshot({ path, fullPage: true })
  return path
}
