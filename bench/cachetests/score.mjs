// Scores results-tusk.json and the package's results/*.json of the shared caches.
// usage: node score.mjs results-tusk.json [--json]
// Test set: every test of pkg/tests/index.mjs that is not browser_only (a shared cache's set).
// "passed" = result === true (as cache-tests.fyi's pass); a missing id counts as not passed.
import fs from 'fs'
import tests from './pkg/tests/index.mjs'
import surrogate from './pkg/tests/surrogate-control.mjs'
import index from './pkg/results/index.mjs'

const tuskFile = process.argv[2]
// issue 14's suites, named by their file in pkg/tests/ (a suite's id can differ from its file
// name: expires-freshness.mjs is 'expires', heuristic-freshness.mjs 'heuristic',
// conditional-etag.mjs 'conditional-inm')
const ISSUE14_FILES = ['cc-freshness', 'cc-parse', 'age-parse', 'expires-freshness', 'expires-parse',
  'stale', 'heuristic-freshness', 'conditional-etag', 'conditional-lm', 'headers', 'update304',
  'partial', 'vary', 'vary-parse', 'status', 'cc-response']
const ISSUE14 = []
for (const f of ISSUE14_FILES) {
  ISSUE14.push((await import(`./pkg/tests/${f}.mjs`)).default.id)
}

function collect (suites) {
  const out = []
  for (const suite of suites) {
    for (const t of suite.tests) {
      if (t.browser_only === true) continue
      out.push({ id: t.id, suite: suite.id, kind: t.kind || 'required', name: t.name })
    }
  }
  return out
}
const all = collect(tests)
const surr = collect([surrogate])

const impls = [{ name: 'tusk', results: JSON.parse(fs.readFileSync(tuskFile, 'utf8')) }]
for (const item of index) {
  if (item.type === 'browser') continue
  impls.push({
    name: `${item.name} ${item.version}`,
    results: JSON.parse(fs.readFileSync(`./pkg/results/${item.file}`, 'utf8'))
  })
}

// cache-tests.fyi's own classification (lib/display.mjs determineTestResult): a required test
// whose dependency did not pass is 'dependency_fail', a Setup error is 'setup_fail'; only the
// rest of the non-passes are shown as a hard fail (red).
const byId = new Map()
for (const suite of [...tests, surrogate]) for (const t of suite.tests) byId.set(t.id, t)
function siteResult (id, results) {
  const t = byId.get(id)
  const r = results[id]
  if (r === undefined) return 'untested'
  for (const dep of t.depends_on || []) {
    if (!['pass', 'yes'].includes(siteResult(dep, results))) return 'dependency_fail'
  }
  if (r[0] === 'Setup') return 'setup_fail'
  const kind = t.kind || 'required'
  if (r === true) return kind === 'check' ? 'yes' : 'pass'
  return kind === 'required' ? 'fail' : kind === 'optimal' ? 'optional_fail' : 'no'
}
function hardFails (set, results) {
  return set.filter(t => t.kind === 'required' && siteResult(t.id, results) === 'fail').length
}

function count (set, results, kind) {
  const sel = set.filter(t => t.kind === kind)
  return [sel.filter(t => results[t.id] === true).length, sel.length]
}

const rows = impls.map(im => {
  const r = count(all, im.results, 'required')
  const r14 = count(all.filter(t => ISSUE14.includes(t.suite)), im.results, 'required')
  const o = count(all, im.results, 'optimal')
  const o14 = count(all.filter(t => ISSUE14.includes(t.suite)), im.results, 'optimal')
  const s = count(surr, im.results, 'required')
  const hf = hardFails(all, im.results)
  return { name: im.name, r, r14, o, o14, s, hf }
})

const f = ([a, b]) => `${a}/${b}`
console.log(`issue-14 suites (file -> suite id): ${ISSUE14_FILES.map((f, i) => f === ISSUE14[i] ? f : `${f} -> ${ISSUE14[i]}`).join(', ')}\n`)
console.log('| cache | required, all suites | required, issue-14 suites | optimal, all | optimal, issue-14 | required shown red on cache-tests.fyi (all suites) | (surrogate-control required) |')
console.log('|---|---|---|---|---|---|---|')
for (const row of rows) {
  console.log(`| ${row.name} | ${f(row.r)} | ${f(row.r14)} | ${f(row.o)} | ${f(row.o14)} | ${row.hf} | ${f(row.s)} |`)
}

// tusk's required failures
const tusk = impls[0].results
const fails = [...all, ...surr].filter(t => t.kind === 'required' && tusk[t.id] !== true)
console.log(`\ntusk: ${fails.length} required tests not passed (incl. surrogate-control):`)
for (const t of fails) {
  const r = tusk[t.id]
  const msg = (r === undefined ? 'MISSING from results' : `${r[0]}: ${r[1]}`) + ` {${siteResult(t.id, tusk)}}`
  const peers = impls.slice(1).filter(im => im.results[t.id] === true).map(im => im.name.split(' ')[0])
  const mark = ISSUE14.includes(t.suite) ? ' (issue-14 suite)' : ''
  console.log(`- ${t.id} [${t.suite}]${mark} ${msg}   (passed by: ${peers.join(', ') || 'none'})`)
}
const missing = all.filter(t => !(t.id in tusk)).length
if (missing) console.log(`\nWARNING: ${missing} test ids missing from ${tuskFile}`)
