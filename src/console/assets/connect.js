// "Connect your tools": ready-to-paste setups for curl, the OpenAI SDKs, Codex CLI and
// Claude Code, filled with this console's own address, a model and (right after creating
// one) the new key.

import { h } from "./ui.js";

function snippets(base, key, model) {
  return [
    ["curl", "curl", `curl ${base}/v1/chat/completions \\
  -H "Authorization: Bearer ${key}" \\
  -H "Content-Type: application/json" \\
  -d '{"model": "${model}", "messages": [{"role": "user", "content": "Hello"}]}'`],
    ["python", "Python", `# pip install openai
from openai import OpenAI

client = OpenAI(base_url="${base}/v1", api_key="${key}")
reply = client.chat.completions.create(
    model="${model}",
    messages=[{"role": "user", "content": "Hello"}],
)
print(reply.choices[0].message.content)`],
    ["node", "Node.js", `// npm install openai
import OpenAI from "openai";

const client = new OpenAI({ baseURL: "${base}/v1", apiKey: "${key}" });
const reply = await client.chat.completions.create({
  model: "${model}",
  messages: [{ role: "user", content: "Hello" }],
});
console.log(reply.choices[0].message.content);`],
    ["codex", "Codex CLI", `# ~/.codex/config.toml
model = "${model}"
model_provider = "instagen"

[model_providers.instagen]
name = "InstaGen"
base_url = "${base}/v1"
env_key = "INSTAGEN_API_KEY"
wire_api = "responses"

# then, in your shell:
export INSTAGEN_API_KEY="${key}"
codex`],
    ["claude", "Claude Code", `export ANTHROPIC_BASE_URL="${base}"
export ANTHROPIC_AUTH_TOKEN="${key}"
export ANTHROPIC_MODEL="${model}"
claude`],
  ];
}

let seq = 0;

// Tabs of snippets (arrow keys move between tabs). `key` is the secret when it was just
// created, else a placeholder; `model` a model this deployment serves.
export function connectTools(key, model) {
  const id = `connect${++seq}`;
  const items = snippets(location.origin, key || "ig-…your key…", model || "MODEL");
  const tabs = [];
  const panels = [];
  const select = (i, focus) => {
    tabs.forEach((t, k) => {
      t.setAttribute("aria-selected", k === i ? "true" : "false");
      t.tabIndex = k === i ? 0 : -1;
      panels[k].hidden = k !== i;
    });
    if (focus) tabs[i].focus();
  };
  items.forEach(([slug, label, code], i) => {
    const panelId = `${id}-${slug}`;
    const copy = h("button", {
      type: "button", class: "btn btn-small copy", "aria-label": `Copy the ${label} snippet`, onclick: async () => {
        try {
          await navigator.clipboard.writeText(code);
          copy.textContent = "Copied";
        } catch (e) {
          copy.textContent = "Select and copy";
        }
      },
    }, "Copy");
    tabs.push(h("button", {
      type: "button", role: "tab", id: `${panelId}-tab`, class: "tab", "aria-controls": panelId, dataset: { tool: slug },
      onclick: () => select(i, false),
      onkeydown: (e) => {
        const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: items.length - 1 }[e.key];
        if (next === undefined) return;
        e.preventDefault();
        select((next + items.length) % items.length, true);
      },
    }, label));
    panels.push(h("div", { role: "tabpanel", id: panelId, class: "tab-panel", "aria-labelledby": `${panelId}-tab`, dataset: { tool: slug } },
      h("pre", { class: "code", tabindex: "0" }, h("code", {}, code)),
      copy));
  });
  select(0, false);
  return h("div", { class: "connect" },
    h("div", { role: "tablist", class: "tabs", "aria-label": "Connect your tools" }, tabs),
    panels);
}
