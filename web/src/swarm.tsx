// A swarm's page: the tree with its time slider, the chats (questions first) with an answer box,
// the node panel (directive, report, error + retry, logs, journal) and the final report. The
// live model (live.ts) keeps it current; the slider reads the tree as it was (`…/state?at=`).

import { useEffect, useMemo, useReducer, useRef, useState } from "preact/hooks";
import { api, errorText } from "./api";
import { SwarmModel } from "./live";
import { StatusBadge, tokens, when } from "./swarms";
import { Legend, Tree } from "./tree";
import type { LogEntry, NodeDetail, NodeView, SwarmSummary } from "./types";

function sortTree(nodes: Iterable<NodeView>): NodeView[] {
  return [...nodes].sort(
    (a, b) => a.depth - b.depth || a.created_at.localeCompare(b.created_at) || a.node_id.localeCompare(b.node_id),
  );
}

function newMessageId(): string {
  return globalThis.crypto?.randomUUID?.() ?? `m-${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

/** The tree at a past step, fetched as the slider moves: the latest position wins. */
function useTreeAt(swarmId: string, seq: number | null): { nodes: NodeView[] | null; loading: boolean } {
  const cache = useRef(new Map<number, NodeView[]>());
  const wanted = useRef<number | null>(null);
  const busy = useRef(false);
  const [, redraw] = useReducer((n: number) => n + 1, 0);
  wanted.current = seq;
  useEffect(() => {
    if (seq === null || cache.current.has(seq) || busy.current) return;
    const run = async () => {
      busy.current = true;
      try {
        while (wanted.current !== null && !cache.current.has(wanted.current)) {
          const at = wanted.current;
          const state = await api<{ nodes: NodeView[] }>("GET", `/swarms/${swarmId}/state?at=${at}`);
          cache.current.set(at, state.nodes);
          redraw(0);
        }
      } finally {
        busy.current = false;
      }
    };
    void run().catch(() => undefined);
  }, [swarmId, seq]);
  if (seq === null) return { nodes: null, loading: false };
  const nodes = cache.current.get(seq);
  if (nodes) return { nodes, loading: false };
  // While the position loads, keep showing the nearest one already read.
  let best: number | null = null;
  for (const key of cache.current.keys()) {
    if (best === null || Math.abs(key - seq) < Math.abs(best - seq)) best = key;
  }
  return { nodes: best === null ? null : cache.current.get(best)!, loading: true };
}

function Journal({ entries }: { entries: LogEntry[] }) {
  if (!entries.length) return <p class="muted">No model calls yet.</p>;
  return (
    <div class="journal">
      {entries.map((entry, i) => {
        const data = entry.data as { task?: string; messages?: { role: string; content: string }[]; response?: unknown };
        return (
          <details key={i} class="journal-entry">
            <summary>
              <strong>{data.task ?? "call"}</strong> · {entry.message} · step {entry.seq}
            </summary>
            {(data.messages ?? []).map((m, j) => (
              <div key={j} class="prompt">
                <div class="role">{m.role}</div>
                <pre>{m.content}</pre>
              </div>
            ))}
            <div class="prompt response">
              <div class="role">response</div>
              <pre>{typeof data.response === "string" ? data.response : JSON.stringify(data.response, null, 2)}</pre>
            </div>
          </details>
        );
      })}
    </div>
  );
}

function NodePanel(props: {
  swarmId: string;
  node: NodeView | undefined;
  nodeId: string;
  hasChat: boolean;
  openChat: () => void;
  close: () => void;
}) {
  const { swarmId, node, nodeId } = props;
  const [detail, setDetail] = useState<NodeDetail | null>(null);
  const [error, setError] = useState("");
  const version = node?.updated_at;
  useEffect(() => {
    let live = true;
    api<NodeDetail>("GET", `/swarms/${swarmId}/nodes/${nodeId}`)
      .then((d) => live && setDetail(d))
      .catch((e) => live && setError(errorText(e)));
    return () => {
      live = false;
    };
  }, [swarmId, nodeId, version]);
  const shown = node ?? detail;
  const retry = async () => {
    setError("");
    try {
      await api("POST", `/swarms/${swarmId}/nodes/${nodeId}/retry`);
    } catch (e) {
      setError(errorText(e));
    }
  };
  return (
    <section class="panel node-panel" data-testid="node-panel">
      <div class="panel-head">
        <h3>{shown?.name ?? "Node"}</h3>
        <span class="spacer" />
        {props.hasChat ? (
          <button class="small secondary" onClick={props.openChat}>Open chat</button>
        ) : null}
        <button class="small secondary" onClick={props.close} aria-label="Close node panel">✕</button>
      </div>
      {shown ? (
        <>
          <p>
            <StatusBadge status={shown.lifecycle} /> <span class="muted">{shown.action.replace(/_/g, " ")}</span>{" "}
            <span class="muted">
              · {shown.usage.prompt_tokens + shown.usage.completion_tokens} tokens, {shown.usage.llm_calls} calls
            </span>
          </p>
          <h4>Directive</h4>
          <p class="text">{shown.directive}</p>
          {shown.report ? (
            <>
              <h4>Report</h4>
              <p class="text report">{shown.report}</p>
            </>
          ) : null}
          {shown.error ? (
            <div class="failure">
              <h4>Error</h4>
              <p class="text error">{shown.error}</p>
              {shown.lifecycle === "failed" ? <button onClick={() => void retry()}>Retry</button> : null}
            </div>
          ) : null}
        </>
      ) : null}
      {error ? <p class="error" role="alert">{error}</p> : null}
      {detail ? (
        <>
          <h4>Journal</h4>
          <Journal entries={detail.journal} />
          <details class="logs">
            <summary>Developer logs ({detail.logs.length})</summary>
            <ul>
              {detail.logs.map((l, i) => (
                <li key={i} class={`log log-${l.level}`}>
                  <span class="muted">step {l.seq}</span> <strong>{l.level}</strong> {l.message}
                  {Object.keys(l.data ?? {}).length ? <pre>{JSON.stringify(l.data, null, 2)}</pre> : null}
                </li>
              ))}
            </ul>
          </details>
        </>
      ) : null}
    </section>
  );
}

function ChatPanel(props: {
  model: SwarmModel;
  node: NodeView;
  showInTree: () => void;
  finished: boolean;
}) {
  const { model, node } = props;
  const [text, setText] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const messageId = useRef(newMessageId());
  useEffect(() => {
    void model.loadChat(node.node_id).catch((e) => setError(errorText(e)));
  }, [node.node_id]);
  const end = useRef<HTMLDivElement>(null);
  const messages = model.messages(node.node_id);
  useEffect(() => end.current?.scrollIntoView?.({ block: "nearest" }), [messages.length]);
  const open = node.interrupt?.status === "open";
  const live = !!node.interrupt && node.lifecycle !== "terminated" && node.lifecycle !== "failed" && !props.finished;
  const send = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      await api("POST", `/swarms/${model.swarmId}/chats/${node.node_id}/messages`, {
        content: text,
        client_message_id: messageId.current,
      });
      setText("");
      messageId.current = newMessageId();
      await model.catchUp(); // shows the committed message even before its live event
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="panel chat" data-testid="chat" data-node-id={node.node_id}>
      <div class="panel-head">
        <h3>{node.name}</h3>
        <span class="spacer" />
        <button class="small secondary" onClick={props.showInTree}>Show in tree</button>
      </div>
      <div class="messages">
        {messages.map((m) => (
          <div key={m.message_id} class={`message ${m.role}`} data-message-id={m.message_id}>
            <div class="meta">
              {m.role === "agent" ? node.name : "You"} · {when(m.created_at)}
            </div>
            <div class="content">{m.content}</div>
          </div>
        ))}
        <div ref={end} />
      </div>
      {live ? (
        <form class="answer" onSubmit={send}>
          <textarea
            name="answer"
            rows={3}
            required
            value={text}
            placeholder={open ? "Your answer" : "Add to your answer (the agent is reading it)"}
            onInput={(e) => setText(e.currentTarget.value)}
          />
          <button type="submit" disabled={busy || !text.trim()}>
            Send
          </button>
        </form>
      ) : null}
      {error ? <p class="error" role="alert">{error}</p> : null}
    </section>
  );
}

export function SwarmPage({ swarmId }: { swarmId: string }) {
  const [, changed] = useReducer((n: number) => n + 1, 0);
  const model = useMemo(() => new SwarmModel(swarmId, () => changed(0)), [swarmId]);
  const [error, setError] = useState("");
  const [selected, setSelected] = useState<string | null>(null);
  const [chatId, setChatId] = useState<string | null>(null);
  const [live, setLive] = useState(true);
  const [position, setPosition] = useState(0);
  const [playing, setPlaying] = useState(false);
  const treeBox = useRef<HTMLDivElement>(null);

  useEffect(() => {
    model
      .load()
      .then(() => model.connect())
      .catch((e) => setError(errorText(e)));
    return () => model.close();
  }, [model]);

  // Refresh the swarm's own fields (usage, report, errors) when its status changes.
  const status = model.swarm?.status;
  useEffect(() => {
    if (status) void model.refreshSwarm().catch(() => undefined);
  }, [status, model.swarm?.final_report]);

  const seq = model.seq;
  const past = useTreeAt(swarmId, live ? null : Math.min(position, seq));
  useEffect(() => {
    if (!playing) return;
    const timer = setInterval(() => {
      setPosition((p) => {
        if (p + 1 >= model.seq) {
          setPlaying(false);
          setLive(true);
          return model.seq;
        }
        return p + 1;
      });
    }, 400);
    return () => clearInterval(timer);
  }, [playing]);

  const liveNodes = useMemo(() => sortTree(model.nodes.values()), [model.version]);
  const shownNodes = live ? liveNodes : (past.nodes ?? []);
  const chats = liveNodes
    .filter((n) => n.action === "ask_user" || n.chat_length > 0)
    .sort((a, b) => {
      const ao = a.interrupt?.status === "open" ? 0 : 1;
      const bo = b.interrupt?.status === "open" ? 0 : 1;
      return ao - bo || a.created_at.localeCompare(b.created_at);
    });
  const openCount = liveNodes.filter((n) => n.interrupt?.status === "open").length;
  // A newcomer lands on the question that waits for them.
  useEffect(() => {
    if (!chatId && openCount) setChatId(chats[0].node_id);
  }, [openCount]);

  const showInTree = (nodeId: string) => {
    setSelected(nodeId);
    requestAnimationFrame(() =>
      treeBox.current?.querySelector(`[data-node-id="${CSS.escape(nodeId)}"]`)?.scrollIntoView?.({ block: "nearest", inline: "center" }),
    );
  };

  const swarm = model.swarm;
  if (error) return <main class="page"><p class="error" role="alert">{error}</p><a href="#/">Back to your swarms</a></main>;
  if (!swarm) return <main class="page"><p class="muted">Loading…</p></main>;
  const finished = swarm.status === "completed" || swarm.status === "failed";
  const command = async (path: string) => {
    try {
      await api("POST", `/swarms/${swarmId}${path}`);
      await model.refreshSwarm();
    } catch (e) {
      setError(errorText(e));
    }
  };
  const chatNode = chatId ? model.nodes.get(chatId) : undefined;
  // A fork of the swarm as the slider shows it (live: its latest step); the new swarm opens.
  const forkAt = live ? seq : Math.min(position, seq);
  const fork = async () => {
    try {
      const made = await api<SwarmSummary>("POST", `/swarms/${swarmId}/fork`, { at: forkAt });
      location.hash = `#/swarms/${made.swarm_id}`;
    } catch (e) {
      setError(errorText(e));
    }
  };

  return (
    <main class="page swarm-page">
      <div class="swarm-head">
        <a href="#/" class="muted">← Swarms</a>
        <h2 class="goal-title">{swarm.goal}</h2>
        <div class="row">
          <StatusBadge status={swarm.status} />
          <span class={`connection connection-${model.connection}`} data-testid="connection">
            {model.connection}
          </span>
          <span class="muted">step {seq} · {swarm.node_count} nodes · {tokens(swarm)} tokens</span>
          <span class="spacer" />
          {swarm.status === "created" ? <button onClick={() => void command("/spawn")}>Spawn</button> : null}
          {swarm.status === "running" || swarm.status === "waiting_for_user" ? (
            <button class="secondary" onClick={() => void command("/pause")}>Pause</button>
          ) : null}
          {swarm.status === "paused" ? <button onClick={() => void command("/resume")}>Resume</button> : null}
          {swarm.spawned ? (
            <button class="secondary" title="a new swarm: this one as it was after that step" onClick={() => void fork()}>
              Fork at step {forkAt}
            </button>
          ) : null}
        </div>
        {swarm.forked_from ? (
          <p class="muted" data-testid="forked-from">
            Forked from <a href={`#/swarms/${swarm.forked_from.swarm_id}`}>this swarm</a> after its step{" "}
            {swarm.forked_from.seq}.
          </p>
        ) : null}
        {swarm.paused_reason ? <p class="error">{swarm.paused_reason}</p> : null}
        {swarm.error ? <p class="error" data-testid="swarm-error">{swarm.error}</p> : null}
      </div>
      {swarm.final_report ? (
        <section class="panel final-report" data-testid="final-report">
          <h3>Final report</h3>
          <p class="text">{swarm.final_report}</p>
        </section>
      ) : null}
      <div class="columns">
        <div class="left">
          <section class="panel">
            <div class="panel-head">
              <h3>Tree</h3>
              <span class="spacer" />
              <Legend />
            </div>
            <div class="tree-box" ref={treeBox}>
              <Tree nodes={shownNodes} selected={selected} onSelect={setSelected} />
            </div>
            <div class="slider row">
              <button
                class="small secondary"
                aria-label={playing ? "Pause replay" : "Replay"}
                onClick={() => {
                  if (playing) return setPlaying(false);
                  if (live || position >= seq) setPosition(0);
                  setLive(false);
                  setPlaying(true);
                }}
              >
                {playing ? "❚❚" : "▶"}
              </button>
              <input
                type="range"
                aria-label="history position"
                min={0}
                max={seq}
                value={live ? seq : Math.min(position, seq)}
                onInput={(e) => {
                  const value = Number(e.currentTarget.value);
                  setPlaying(false);
                  setPosition(value);
                  setLive(value >= seq);
                }}
              />
              <span class="nowrap" data-testid="position">
                {live ? `live · step ${seq}` : `step ${Math.min(position, seq)} of ${seq}${past.loading ? " …" : ""}`}
              </span>
              <button class="small secondary" disabled={live} onClick={() => (setPlaying(false), setLive(true))}>
                Live
              </button>
            </div>
          </section>
          {selected ? (
            <NodePanel
              key={selected}
              swarmId={swarmId}
              nodeId={selected}
              node={model.nodes.get(selected)}
              hasChat={chats.some((c) => c.node_id === selected)}
              openChat={() => setChatId(selected)}
              close={() => setSelected(null)}
            />
          ) : null}
        </div>
        <div class="right">
          <section class="panel chats">
            <div class="panel-head">
              <h3>Chats</h3>
              {openCount ? (
                <span class="badge" data-testid="open-questions" title="questions waiting for you">
                  {openCount}
                </span>
              ) : null}
            </div>
            {chats.length ? (
              <ul class="chat-list">
                {chats.map((n) => (
                  <li key={n.node_id}>
                    <button
                      class={`chat-item${n.node_id === chatId ? " active" : ""}`}
                      data-node-id={n.node_id}
                      onClick={() => setChatId(n.node_id)}
                    >
                      {n.interrupt?.status === "open" ? <span class="dot" title="waiting for your answer" /> : null}
                      {n.name}
                      <span class="muted small"> · {n.lifecycle.replace(/_/g, " ")}</span>
                    </button>
                  </li>
                ))}
              </ul>
            ) : (
              <p class="muted">No agent has talked to you yet.</p>
            )}
          </section>
          {chatNode ? (
            <ChatPanel key={chatNode.node_id} model={model} node={chatNode} finished={finished} showInTree={() => showInTree(chatNode.node_id)} />
          ) : null}
        </div>
      </div>
    </main>
  );
}
