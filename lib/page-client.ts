// What the runner's pages share in the browser: calling a function (asking for the token
// once when the runner wants one) and making elements.
const TOKEN = 'cyber-dojo-runner.token';

export async function call(fn: string, body?: unknown): Promise<unknown> {
  for (let asked = false; ; asked = true) {
    const token = sessionStorage.getItem(TOKEN);
    const response = await fetch(`/${fn}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = (await response.json()) as Record<string, unknown> & { exception?: { message: string } };
    if (response.status === 401 && !asked) {
      const given = prompt('This runner needs a token');
      if (given) {
        sessionStorage.setItem(TOKEN, given);
        continue;
      }
    }
    if (!response.ok) throw new Error(`${fn}: ${answer.exception?.message ?? response.status}`);
    return answer[fn];
  }
}

export function element(tag: string, attributes: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) e.setAttribute(name, value);
  e.append(...children);
  return e;
}
