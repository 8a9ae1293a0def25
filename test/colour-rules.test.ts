// Colour rules without an engine: every start point's colour-rules.json against the
// outputs of real runs of its image, and lib/colour.ts's answers to broken rules.
// The fixtures are test/fixtures/colour/<start point>/<colour>[-<case>].json, written by
// `COLOUR_FIXTURES=write npx tap test/languages.test.ts`.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { FastifyBaseLogger } from 'fastify';
import t from 'tap';
import { classify, COLOUR_RULES_LABEL, ColourRulesCache, parseColourRules } from '../lib/colour.ts';
import type { Engine, ImageInfo } from '../lib/engine.ts';
import { EngineError } from '../lib/errors.ts';

const START_POINTS = new URL('../deploy/start-points/', import.meta.url);
const FIXTURES = new URL('fixtures/colour/', import.meta.url);
const startPoints = readdirSync(START_POINTS, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);

t.test('every start point has fixtures of red, amber and green, and every fixture a start point', async (t) => {
  for (const name of startPoints) {
    for (const colour of ['red', 'amber', 'green']) {
      t.ok(existsSync(new URL(`${name}/${colour}.json`, FIXTURES)), `${name}/${colour}.json`);
    }
  }
  t.strictSame(readdirSync(FIXTURES).filter((name) => !startPoints.includes(name)), []);
});

for (const name of startPoints) {
  t.test(`${name}: its rules give every captured output its colour`, async (t) => {
    const rules = parseColourRules(readFileSync(new URL(`${name}/colour-rules.json`, START_POINTS), 'utf8'));
    for (const file of readdirSync(new URL(`${name}/`, FIXTURES))) {
      const { stdout, stderr, status } = JSON.parse(readFileSync(new URL(`${name}/${file}`, FIXTURES), 'utf8'));
      t.equal(classify(rules, stdout, stderr, status), /^[a-z]+/.exec(file)![0], file);
    }
  });
}

t.test('classify: the first rule whose conditions all hold wins; otherwise, else null', async (t) => {
  const rules = parseColourRules(
    JSON.stringify({
      rules: [
        { colour: 'amber', if: [{ stderr: '^error' }] },
        { colour: 'red', if: [{ status: [1, 2] }, { stdout: 'FAIL', flags: 'i' }] },
        { colour: 'green', if: [{ status: 0 }, { output: 'ok\\nend' }, { stdout: 'fail', not: true, flags: 'i' }] },
      ],
    }),
  );
  t.equal(classify(rules, 'fail', 'x\nerror', 1), 'amber', 'the first rule wins; ^ matches at a line start (flags default to m)');
  t.equal(classify(rules, 'a fail', '', 2), 'red', 'a status in the list, and the flags given');
  t.equal(classify(rules, 'a fail', '', 3), null, 'a status not in the list; no otherwise');
  t.equal(classify(rules, 'ok\n', 'end', 0), 'green', 'output is stdout then stderr');
  t.equal(classify(rules, 'ok\nFAIL', 'end', 0), null, 'not: the condition must not hold');
  const withOtherwise = parseColourRules(JSON.stringify({ rules: [{ colour: 'green', if: [{ status: 0 }] }], otherwise: 'amber' }));
  t.equal(classify(withOtherwise, '', '', 1), 'amber');
});

t.test('parseColourRules says what is wrong with malformed rules', async (t) => {
  const cases: [string, unknown, RegExp][] = [
    ['empty rules', { rules: [] }, /^rules: expected a non-empty list$/],
    ['no rules', { otherwise: 'red' }, /^rules: expected a non-empty list$/],
    ['not an object', [1], /^rules: expected a non-empty list$/],
    ['a bad colour', { rules: [{ colour: 'blue', if: [{ status: 0 }] }] }, /^rules\[0\]\.colour: expected red, amber or green$/],
    ['a bad otherwise', { rules: [{ colour: 'red', if: [{ status: 0 }] }], otherwise: 'purple' }, /^otherwise: expected red, amber or green$/],
    ['no conditions', { rules: [{ colour: 'red', if: [] }] }, /^rules\[0\]\.if: expected a non-empty list$/],
    ['a condition on two things', { rules: [{ colour: 'red', if: [{ status: 0, stdout: 'x' }] }] }, /^rules\[0\]\.if\[0\]: needs exactly one of/],
    ['a condition on nothing', { rules: [{ colour: 'red', if: [{ not: true }] }] }, /^rules\[0\]\.if\[0\]: needs exactly one of/],
    ['a condition that is no object', { rules: [{ colour: 'red', if: ['x'] }] }, /^rules\[0\]\.if\[0\]: not an object$/],
    ['a bad status', { rules: [{ colour: 'red', if: [{ status: '1' }] }] }, /^rules\[0\]\.if\[0\]: status must be an integer/],
    ['a bad regex', { rules: [{ colour: 'red', if: [{ status: 0 }] }, { colour: 'green', if: [{ stdout: '(' }] }] }, /Invalid regular expression/],
    ['a regex that is no string', { rules: [{ colour: 'red', if: [{ output: 1 }] }] }, /^rules\[0\]\.if\[0\]: output must be a regular expression/],
    ['bad flags', { rules: [{ colour: 'red', if: [{ stderr: 'x', flags: 'g' }] }] }, /^rules\[0\]\.if\[0\]: stderr must be a regular expression, flags of i, m, s, u$/],
  ];
  for (const [what, rules, message] of cases) t.throws(() => parseColourRules(JSON.stringify(rules)), message, what);
  t.throws(() => parseColourRules('{"rules": ['), SyntaxError, 'not JSON');
});

// An engine with only images, which counts how often it is asked.
function engineWith(images: Record<string, Record<string, string> | 'unavailable'>) {
  const asked: string[] = [];
  const engine = {
    inspectImage: async (id: string): Promise<ImageInfo | null> => {
      asked.push(id);
      const labels = images[id];
      if (labels === 'unavailable') throw new EngineError('unavailable', 'engine down');
      return labels ? { id, labels } : null;
    },
  } as unknown as Engine;
  return { engine, asked };
}

const quietLog = () => {
  const warnings: unknown[] = [];
  return { log: { warn: (what: unknown) => warnings.push(what) } as unknown as FastifyBaseLogger, warnings };
};

t.test('the cache answers the rules of an image, or why they are unusable, asking the engine once per image', async (t) => {
  const label = (rules: unknown) => ({ [COLOUR_RULES_LABEL]: typeof rules === 'string' ? rules : JSON.stringify(rules) });
  const { engine, asked } = engineWith({
    good: label({ rules: [{ colour: 'green', if: [{ status: 0 }] }], otherwise: 'red' }),
    unlabelled: { other: 'x' },
    'bad-regex': label({ rules: [{ colour: 'red', if: [{ stdout: '[' }] }] }),
    'bad-colour': label({ rules: [{ colour: 'blue', if: [{ status: 0 }] }] }),
    empty: label({ rules: [] }),
    'not-json': label('{'),
  });
  const { log, warnings } = quietLog();
  const cache = new ColourRulesCache(engine, log);
  const good = await cache.get('good');
  t.not(typeof good, 'string');
  t.equal(classify(good as Exclude<typeof good, string>, '', '', 0), 'green');
  t.equal(classify(good as Exclude<typeof good, string>, '', '', 1), 'red');
  t.equal(await cache.get('unlabelled'), `image has no ${COLOUR_RULES_LABEL} label`);
  t.equal(await cache.get('missing'), `image has no ${COLOUR_RULES_LABEL} label`, 'an image the engine does not have');
  t.match(await cache.get('bad-regex'), /^cyber-dojo\.colour_rules: Invalid regular expression/);
  t.equal(await cache.get('bad-colour'), `${COLOUR_RULES_LABEL}: rules[0].colour: expected red, amber or green`);
  t.equal(await cache.get('empty'), `${COLOUR_RULES_LABEL}: rules: expected a non-empty list`);
  t.match(await cache.get('not-json'), /^cyber-dojo\.colour_rules: .*JSON/);
  t.equal(warnings.length, 6, 'each unusable rule set is logged');
  for (const id of ['good', 'unlabelled', 'bad-regex']) await cache.get(id);
  t.strictSame(asked.sort(), ['bad-colour', 'bad-regex', 'empty', 'good', 'missing', 'not-json', 'unlabelled'], 'each image inspected once, broken ones too');
});

t.test('the cache forgets an engine failure, and asks again next time', async (t) => {
  const images: Record<string, Record<string, string> | 'unavailable'> = { flaky: 'unavailable' };
  const { engine, asked } = engineWith(images);
  const cache = new ColourRulesCache(engine, quietLog().log);
  await t.rejects(cache.get('flaky'), EngineError);
  images.flaky = { [COLOUR_RULES_LABEL]: JSON.stringify({ rules: [{ colour: 'red', if: [{ status: 1 }] }] }) };
  const rules = await cache.get('flaky');
  t.equal(classify(rules as Exclude<typeof rules, string>, '', '', 1), 'red');
  t.strictSame(asked, ['flaky', 'flaky']);
});
