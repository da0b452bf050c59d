// The spawn page: the user's swarms, newest first, and a form to create one.

import { useEffect, useState } from "preact/hooks";
import { api, errorText } from "./api";
import type { SwarmDetail, SwarmSummary } from "./types";

export function when(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : "";
}

export function tokens(swarm: SwarmDetail | undefined): string {
  if (!swarm) return "";
  return (swarm.usage.prompt_tokens + swarm.usage.completion_tokens).toLocaleString();
}

export function StatusBadge({ status }: { status: string }) {
  return <span class={`status status-${status}`}>{status.replace(/_/g, " ")}</span>;
}

// Numbers of the optional config, as the API names them.
const LIMITS = ["max_depth", "max_children", "max_nodes", "max_tokens_total"] as const;
const OFFLINE = ["offline_breadth", "offline_depth"] as const;

function CreateForm({ created }: { created: () => void }) {
  const [goal, setGoal] = useState("");
  const [fields, setFields] = useState<Record<string, string>>({});
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const set = (name: string) => (e: Event) =>
    setFields({ ...fields, [name]: (e.currentTarget as HTMLInputElement).value });
  const num = (name: string) => (fields[name] ?? "").trim();

  const config = (): Record<string, unknown> => {
    const result: Record<string, any> = {};
    const limits: Record<string, number> = {};
    for (const name of LIMITS) if (num(name)) limits[name] = Number(num(name));
    if (Object.keys(limits).length) result.limits = limits;
    for (const name of OFFLINE) if (num(name)) result[name] = Number(num(name));
    const llm: Record<string, unknown> = {};
    if (num("model")) llm.model = num("model");
    if (num("temperature")) llm.temperature = Number(num("temperature"));
    if (num("max_tokens")) llm.max_tokens = Number(num("max_tokens"));
    if (num("system_prompt")) llm.system_prompt = fields.system_prompt;
    if (Object.keys(llm).length) result.llm = llm;
    return result;
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      const cfg = config();
      await api("POST", "/swarms", Object.keys(cfg).length ? { goal, config: cfg } : { goal });
      setGoal("");
      created();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const input = (name: string, label: string, text = false) => (
    <label key={name}>
      {label}
      {text ? (
        <input name={name} value={fields[name] ?? ""} onInput={set(name)} />
      ) : (
        <input name={name} type="number" step="any" value={fields[name] ?? ""} onInput={set(name)} />
      )}
    </label>
  );

  return (
    <form class="create card" onSubmit={submit}>
      <label>
        Goal
        <textarea name="goal" rows={2} value={goal} required placeholder="Plan a 3-day trip to Lisbon" onInput={(e) => setGoal(e.currentTarget.value)} />
      </label>
      <details>
        <summary>Options (limits, model, system prompt)</summary>
        <div class="grid">
          {input("max_depth", "Max depth")}
          {input("max_children", "Max children")}
          {input("max_nodes", "Max nodes")}
          {input("max_tokens_total", "Token budget")}
          {input("offline_breadth", "Offline LLM breadth")}
          {input("offline_depth", "Offline LLM depth")}
          {input("model", "Model", true)}
          {input("temperature", "Temperature")}
          {input("max_tokens", "Max tokens per call")}
        </div>
        <label>
          System prompt
          <textarea name="system_prompt" rows={2} value={fields.system_prompt ?? ""} onInput={set("system_prompt")} />
        </label>
      </details>
      {error ? <p class="error" role="alert">{error}</p> : null}
      <button type="submit" disabled={busy}>Create swarm</button>
    </form>
  );
}

function SwarmRow({ swarm, detail, changed }: { swarm: SwarmSummary; detail?: SwarmDetail; changed: () => void }) {
  const [confirming, setConfirming] = useState(false);
  const [error, setError] = useState("");
  const command = async (method: string, path: string) => {
    setError("");
    try {
      await api(method, `/swarms/${swarm.swarm_id}${path}`);
      changed();
    } catch (e) {
      setError(errorText(e));
    }
  };
  const s = swarm.status;
  return (
    <tr data-swarm-id={swarm.swarm_id}>
      <td class="goal">
        <a href={`#/swarms/${swarm.swarm_id}`}>{swarm.goal}</a>
        {swarm.error ? <div class="error small">{swarm.error}</div> : null}
        {error ? <div class="error small" role="alert">{error}</div> : null}
      </td>
      <td><StatusBadge status={s} /></td>
      <td>{swarm.spawned ? "yes" : "no"}</td>
      <td class="nowrap">{when(swarm.created_at)}</td>
      <td class="num">{tokens(detail)}</td>
      <td class="actions">
        {s === "created" ? <button class="small" onClick={() => void command("POST", "/spawn")}>Spawn</button> : null}
        {s === "running" || s === "waiting_for_user" ? (
          <button class="small secondary" onClick={() => void command("POST", "/pause")}>Pause</button>
        ) : null}
        {s === "paused" ? <button class="small secondary" onClick={() => void command("POST", "/resume")}>Resume</button> : null}
        {confirming ? (
          <span class="confirm">
            Delete for good?
            <button class="small danger" onClick={() => void command("DELETE", "")}>Yes, delete</button>
            <button class="small secondary" onClick={() => setConfirming(false)}>No</button>
          </span>
        ) : (
          <button class="small secondary" onClick={() => setConfirming(true)}>Delete</button>
        )}
      </td>
    </tr>
  );
}

export function SwarmList() {
  const [items, setItems] = useState<SwarmSummary[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [details, setDetails] = useState<Record<string, SwarmDetail>>({});
  const [error, setError] = useState("");
  const [loaded, setLoaded] = useState(false);

  const loadDetails = (page: SwarmSummary[]) => {
    // Tokens used live in each swarm's detail; created swarms have used none.
    for (const s of page.filter((s) => s.spawned)) {
      api<SwarmDetail>("GET", `/swarms/${s.swarm_id}`)
        .then((d) => setDetails((all) => ({ ...all, [d.swarm_id]: d })))
        .catch(() => undefined);
    }
  };
  const load = async (token: string | null = null) => {
    setError("");
    try {
      const query = token ? `&continuation_token=${encodeURIComponent(token)}` : "";
      const page = await api<{ items: SwarmSummary[]; continuation_token: string | null }>("GET", `/swarms?limit=20${query}`);
      setItems((old) => (token ? [...old, ...page.items] : page.items));
      setNext(page.continuation_token);
      loadDetails(page.items);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setLoaded(true);
    }
  };
  useEffect(() => {
    void load();
  }, []);

  return (
    <main class="page">
      <h2>New swarm</h2>
      <CreateForm created={() => void load()} />
      <h2>Your swarms</h2>
      {error ? <p class="error" role="alert">{error}</p> : null}
      {loaded && !items.length ? <p class="muted">No swarms yet: create one above.</p> : null}
      {items.length ? (
        <table class="swarms">
          <thead>
            <tr>
              <th>Goal</th>
              <th>Status</th>
              <th>Spawned</th>
              <th>Created</th>
              <th class="num">Tokens</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {items.map((s) => (
              <SwarmRow key={s.swarm_id} swarm={s} detail={details[s.swarm_id]} changed={() => void load()} />
            ))}
          </tbody>
        </table>
      ) : null}
      {next ? (
        <button class="secondary" onClick={() => void load(next)}>
          Load more
        </button>
      ) : null}
    </main>
  );
}
