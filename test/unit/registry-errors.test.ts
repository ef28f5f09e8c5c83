// The error catalogue: only its own codes are codes, and an error built from anything else is still a valid 500.
import t from 'tap'
import { isRegistryErrorCode, RegistryError, type RegistryErrorCode } from '../../src/registry/errors.js'

t.test('codes are the catalogue own keys only, never prototype keys', async (t) => {
  for (const inherited of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
    t.notOk(isRegistryErrorCode(inherited), `${inherited} is not a registry error code`)
  }
  t.ok(isRegistryErrorCode('DENIED'), 'DENIED is')
})

t.test("new RegistryError('constructor') is a 500 in the registry error format, not a status of undefined", async (t) => {
  // A code that slipped past the type system (a cast from an upstream answer).
  const bogus = new RegistryError('constructor' as RegistryErrorCode)
  t.equal(bogus.status, 500)
  t.equal(bogus.code, 'INTERNAL')
  t.same(JSON.parse(bogus.body()), { errors: [{ code: 'UNKNOWN', message: 'internal error in the gateway' }] })
  t.equal(new RegistryError('DENIED').status, 403, 'known codes keep their status')
})
