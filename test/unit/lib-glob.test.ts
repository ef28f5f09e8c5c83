// The one repository glob dialect (src/lib/glob.ts): * within a component, ** across (zero or more whole components), ? one character.
import t from 'tap'
import { compileGlob, globProblem, globSource, repositoryGlobPattern } from '../../src/lib/glob.js'

const matches = (glob: string, name: string): boolean => compileGlob(glob).test(name)

t.test('* stays within one path component, ? is one character of it', async (t) => {
  t.ok(matches('team/*', 'team/app'))
  t.notOk(matches('team/*', 'team/a/b'), '* does not cross a slash')
  t.notOk(matches('team/*', 'team'), 'the slash is literal')
  t.ok(matches('app-?', 'app-1'))
  t.notOk(matches('app-?', 'app-12'))
  t.notOk(matches('a?b', 'a/b'), '? is not a slash')
})

t.test('** between slashes matches zero or more whole components', async (t) => {
  t.ok(matches('team/**/cache', 'team/cache'), 'zero components')
  t.ok(matches('team/**/cache', 'team/x/cache'))
  t.ok(matches('team/**/cache', 'team/x/y/cache'))
  t.notOk(matches('team/**/cache', 'team/xcache'), 'not part of a component')
  t.notOk(matches('team/**/cache', 'teamx/cache'))
  t.ok(matches('**/cache', 'cache'), 'a leading **/ may match nothing')
  t.ok(matches('**/cache', 'a/b/cache'))
  t.notOk(matches('**/cache', 'acache'))
})

t.test('** elsewhere matches any characters, slashes included', async (t) => {
  t.ok(matches('ml/**', 'ml/a'))
  t.ok(matches('ml/**', 'ml/a/b/c'))
  t.notOk(matches('ml/**', 'ml'), 'the slash before a trailing ** is literal')
  t.ok(matches('a**', 'a/b/c'))
  t.ok(matches('**', 'any/thing'))
})

t.test('regular-expression characters are literal', async (t) => {
  t.ok(matches('a.b', 'a.b'))
  t.notOk(matches('a.b', 'axb'), 'a dot is a dot')
  t.notOk(matches('a+', 'aa'))
})

t.test('globSource for a piece after a placeholder: a ** there does not start the glob', async (t) => {
  t.equal(globSource('**/x', true), '(?:.*/)?x')
  t.equal(globSource('**/x', false), '.*\\/x', 'after ${account}, ** does not stand for whole components')
})

t.test('globProblem names what cannot match a repository', async (t) => {
  t.equal(globProblem('team/**/cache'), undefined)
  t.equal(globProblem(''), 'an empty glob')
  t.equal(globProblem('a/***'), 'three or more * in a row')
  t.equal(globProblem('Team/*'), 'characters no repository name can contain')
})

t.test('repositoryGlobPattern (for config schemas) accepts exactly what globProblem accepts', async (t) => {
  for (const glob of ['team/**/cache', 'ml/**', 'a?b', '**', 'x.y_z-1/*', '', 'a/***', 'Team/*', 'a b', 'a$b', '${account}/x']) {
    t.equal(repositoryGlobPattern.test(glob), globProblem(glob) === undefined, JSON.stringify(glob))
  }
})
