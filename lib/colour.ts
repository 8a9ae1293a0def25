// Colour rules: data a start point ships in its image's `cyber-dojo.colour_rules`
// label (the runner never evaluates code from an image). The first rule whose
// conditions all hold gives the colour; `otherwise` when none does, else faulty.
//
//   {"rules": [{"colour": "amber", "if": [{"output": "^SyntaxError", "flags": "m"}]},
//              {"colour": "green", "if": [{"status": 0}, {"stdout": "FAIL", "not": true}]}],
//    "otherwise": "red"}
//
// A condition tests one of `stdout`, `stderr`, `output` (stdout + stderr) against a
// regular expression (flags default to "m"), or `status` against an integer or a list.
import type { FastifyBaseLogger } from 'fastify';
import type { Engine } from './engine.ts';

export const COLOUR_RULES_LABEL = 'cyber-dojo.colour_rules';
const COLOURS = ['red', 'amber', 'green'] as const;
export type Colour = (typeof COLOURS)[number];

type Test = (stdout: string, stderr: string, status: number) => boolean;
export interface ColourRules {
  rules: { colour: Colour; tests: Test[] }[];
  otherwise: Colour | null;
}

const isColour = (value: unknown): value is Colour => COLOURS.includes(value as Colour);

function condition(raw: unknown, where: string): Test {
  if (typeof raw !== 'object' || raw === null) throw new Error(`${where}: not an object`);
  const c = raw as Record<string, unknown>;
  const keys = ['stdout', 'stderr', 'output', 'status'].filter((k) => k in c);
  if (keys.length !== 1) throw new Error(`${where}: needs exactly one of stdout, stderr, output, status`);
  const negate = c.not === true;
  let test: Test;
  if (keys[0] === 'status') {
    const statuses = Array.isArray(c.status) ? c.status : [c.status];
    if (!statuses.every(Number.isInteger)) throw new Error(`${where}: status must be an integer or a list of them`);
    test = (_out, _err, status) => statuses.includes(status);
  } else {
    const source = c[keys[0]!];
    const flags = c.flags ?? 'm';
    if (typeof source !== 'string' || typeof flags !== 'string' || !/^[imsu]*$/.test(flags)) {
      throw new Error(`${where}: ${keys[0]} must be a regular expression, flags of i, m, s, u`);
    }
    const regex = new RegExp(source, flags); // throws on a malformed expression
    const pick = keys[0] === 'stdout' ? (o: string) => o : keys[0] === 'stderr' ? (_o: string, e: string) => e : (o: string, e: string) => o + e;
    test = (out, err) => regex.test(pick(out, err));
  }
  return negate ? (out, err, status) => !test(out, err, status) : test;
}

// Throws an Error saying what is wrong with the rules.
export function parseColourRules(text: string): ColourRules {
  const raw = JSON.parse(text) as { rules?: unknown; otherwise?: unknown };
  if (!Array.isArray(raw?.rules) || raw.rules.length === 0) throw new Error('rules: expected a non-empty list');
  if (raw.otherwise !== undefined && !isColour(raw.otherwise)) throw new Error('otherwise: expected red, amber or green');
  const rules = raw.rules.map((rule: { colour?: unknown; if?: unknown }, i: number) => {
    if (!isColour(rule?.colour)) throw new Error(`rules[${i}].colour: expected red, amber or green`);
    if (!Array.isArray(rule.if) || rule.if.length === 0) throw new Error(`rules[${i}].if: expected a non-empty list`);
    return { colour: rule.colour, tests: rule.if.map((c: unknown, j: number) => condition(c, `rules[${i}].if[${j}]`)) };
  });
  return { rules, otherwise: (raw.otherwise as Colour | undefined) ?? null };
}

// null: no rule held and there is no `otherwise`.
export function classify(rules: ColourRules, stdout: string, stderr: string, status: number): Colour | null {
  const rule = rules.rules.find((r) => r.tests.every((test) => test(stdout, stderr, status)));
  return rule?.colour ?? rules.otherwise;
}

// Rules by image id, read once per image from the engine. A missing or broken rule
// set is remembered too (as the reason), so each image is inspected only once.
export class ColourRulesCache {
  private readonly byImage = new Map<string, Promise<ColourRules | string>>();

  constructor(
    private readonly engine: Engine,
    private readonly log: FastifyBaseLogger,
  ) {}

  get(imageId: string): Promise<ColourRules | string> {
    let rules = this.byImage.get(imageId);
    if (!rules) {
      rules = this.load(imageId);
      this.byImage.set(imageId, rules);
      // An engine failure is not the image's fault: forget it, and ask again next time.
      rules.catch(() => this.byImage.delete(imageId));
    }
    return rules;
  }

  private async load(imageId: string): Promise<ColourRules | string> {
    const image = await this.engine.inspectImage(imageId);
    const text = image?.labels[COLOUR_RULES_LABEL];
    let reason: string;
    if (text === undefined) {
      reason = `image has no ${COLOUR_RULES_LABEL} label`;
    } else {
      try {
        return parseColourRules(text);
      } catch (e) {
        reason = `${COLOUR_RULES_LABEL}: ${(e as Error).message}`;
      }
    }
    this.log.warn({ imageId, reason }, 'colour rules unusable: runs are faulty');
    return reason;
  }
}
