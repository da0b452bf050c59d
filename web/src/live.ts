// One swarm as the console knows it: the tree, the chats and the swarm's status, kept current by
// the swarm's events. Events come live over Web PubSub (the official client) and, on a gap in
// `seq` or after a (re)connect, from `GET …/history?after=`; every event is applied once (by
// `seq` and `index`), a node only ever moves forward (and a node a rerun discarded never comes
// back), a chat message is kept once (by `message_id`), so the page shows neither a stale nor a
// duplicated message.

import { WebPubSubClient } from "@azure/web-pubsub-client";
import { api } from "./api";
import type { ChatMessage, NodeView, SwarmDetail, SwarmEvent } from "./types";

export type Connection = "connecting" | "live" | "reconnecting" | "offline";

type Position = [seq: number, index: number];

function after(a: Position, b: Position): boolean {
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
}

export class SwarmModel {
  swarm: SwarmDetail | null = null;
  nodes = new Map<string, NodeView>();
  /** Every event up to this seq is applied (the tree we loaded was at `base`). */
  base = 0;
  /** The highest seq of an event seen. */
  seq = 0;
  /** Every event up to (`contiguous`, `lastIndex`) is applied: from the loaded tree, the
   * history, or live events that came in order (a step's events arrive one by one, `index` 0, 1,
   * …). A live event that does not come next is a gap, and the catch-up reads the history from
   * here, never from `seq`, which the event after a gap has already moved past the missing ones. */
  contiguous = 0;
  lastIndex = Number.MAX_SAFE_INTEGER;
  connection: Connection = "connecting";
  /** Moves on whenever a node changes (the tree's memo key). */
  version = 0;
  /** Chats loaded so far, by node: messages by id. */
  chats = new Map<string, Map<string, ChatMessage>>();
  private applied = new Set<string>();
  private nodeAt = new Map<string, Position>();
  private statusAt: Position = [0, -1];
  private client: WebPubSubClient | null = null;
  private catchingUp: Promise<void> | null = null;
  private catchUpAgain = false;
  private closed = false;
  private changed: () => void;

  constructor(
    readonly swarmId: string,
    changed: () => void,
  ) {
    this.changed = changed;
  }

  async load(): Promise<void> {
    const [swarm, state] = await Promise.all([
      api<SwarmDetail>("GET", `/swarms/${this.swarmId}`),
      api<{ seq: number; nodes: NodeView[] }>("GET", `/swarms/${this.swarmId}/state`),
    ]);
    this.swarm = swarm;
    for (const node of state.nodes) {
      this.nodes.set(node.node_id, node);
      this.nodeAt.set(node.node_id, [state.seq, Number.MAX_SAFE_INTEGER]);
    }
    this.version++;
    this.statusAt = [Math.min(swarm.seq, state.seq), Number.MAX_SAFE_INTEGER];
    this.base = this.seq = this.contiguous = state.seq;
    this.changed();
    await this.catchUp();
  }

  /** Connect to the swarm's events; reconnects (with a new URL) by itself. */
  connect(): void {
    const client = new WebPubSubClient(
      {
        getClientAccessUrl: async () =>
          (await api<{ url: string }>("GET", `/negotiate?swarm_id=${encodeURIComponent(this.swarmId)}`))
            .url,
      },
      { autoRejoinGroups: false, reconnectRetryOptions: { maxRetries: 1000, retryDelayInMs: 1000, maxRetryDelayInMs: 5000 } },
    );
    this.client = client;
    client.on("connected", () => {
      this.setConnection("live");
      // Whatever was published while we were away is in the history.
      void this.catchUp();
    });
    client.on("disconnected", () => this.setConnection(this.closed ? "offline" : "reconnecting"));
    client.on("stopped", () => this.setConnection("offline"));
    client.on("group-message", (message) => {
      const data = message.message.data;
      const event = (typeof data === "string" ? JSON.parse(data) : data) as SwarmEvent;
      this.receive(event);
    });
    client.start().catch(() => this.setConnection("offline"));
  }

  close(): void {
    this.closed = true;
    this.client?.stop();
    this.client = null;
  }

  private setConnection(state: Connection): void {
    this.connection = state;
    this.changed();
  }

  /** A live event: apply it; on a gap, fetch what is missing from the history. */
  receive(event: SwarmEvent): void {
    if (event.swarm_id !== this.swarmId) return;
    if (event.seq <= this.base || this.applied.has(`${event.seq}:${event.index}`)) return;
    const next =
      (event.seq === this.contiguous && event.index === this.lastIndex + 1) ||
      (event.seq === this.contiguous + 1 && event.index === 0);
    this.apply(event);
    if (next) {
      this.contiguous = event.seq;
      this.lastIndex = event.index;
    } else {
      void this.catchUp();
    }
    this.changed();
  }

  /** Fetch the history after the last step we may have seen only in part; apply it in order. */
  catchUp(): Promise<void> {
    if (this.catchingUp) {
      this.catchUpAgain = true;
      return this.catchingUp;
    }
    this.catchingUp = (async () => {
      try {
        do {
          this.catchUpAgain = false;
          // The last step known in full may have been cut off mid-way (events of one step
          // arrive one by one): read it again (it is deduplicated).
          let from = Math.max(this.base, this.contiguous - 1);
          for (;;) {
            const page = await api<{ events: SwarmEvent[]; next_after: number }>(
              "GET",
              `/swarms/${this.swarmId}/history?after=${from}&limit=1000`,
            );
            if (!page.events.length) break;
            page.events.forEach((e) => this.apply(e));
            // A page holds whole steps: everything up to its last step is applied now.
            const last = page.events[page.events.length - 1];
            if (last.seq >= this.contiguous) {
              this.contiguous = last.seq;
              this.lastIndex = last.index;
            }
            from = page.next_after;
            this.changed();
          }
        } while (this.catchUpAgain && !this.closed);
      } finally {
        this.catchingUp = null;
      }
    })();
    return this.catchingUp;
  }

  private apply(event: SwarmEvent): void {
    const key = `${event.seq}:${event.index}`;
    if (event.seq <= this.base || this.applied.has(key)) return;
    this.applied.add(key);
    this.seq = Math.max(this.seq, event.seq);
    const at: Position = [event.seq, event.index];
    const data = event.data;
    switch (event.type) {
      case "node.spawned":
      case "node.updated": {
        const node = data.node as NodeView;
        const known = this.nodeAt.get(node.node_id);
        if (!known || after(at, known)) {
          this.nodes.set(node.node_id, node);
          this.nodeAt.set(node.node_id, at);
          this.version++;
        }
        break;
      }
      case "node.rerun":
        // The branch left the tree for good. Its position stays at the end of time, so an
        // older event of one of its nodes, read late from the history, cannot bring it back.
        for (const nodeId of data.discarded as string[]) {
          this.nodes.delete(nodeId);
          this.chats.delete(nodeId);
          this.nodeAt.set(nodeId, [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER]);
        }
        this.version++;
        break;
      case "chat.message":
        if (this.nodeAt.get(data.node_id)?.[0] === Number.MAX_SAFE_INTEGER) break; // discarded
        this.addMessages(data.node_id as string, [data as ChatMessage]);
        break;
      case "swarm.status":
        if (this.swarm && after(at, this.statusAt)) {
          this.statusAt = at;
          if (data.status !== "deleted") this.swarm.status = data.status;
          this.swarm.paused_reason = data.reason ?? null;
          if (data.error) this.swarm.error = data.error;
        }
        break;
      case "swarm.completed":
        if (this.swarm) this.swarm.final_report = data.final_report as string;
        break;
      case "node.failed":
        break; // the same step's node.updated carries the failed node
    }
    if (this.swarm) this.swarm.seq = Math.max(this.swarm.seq, event.seq);
  }

  addMessages(nodeId: string, messages: ChatMessage[]): void {
    let chat = this.chats.get(nodeId);
    if (!chat) {
      chat = new Map();
      this.chats.set(nodeId, chat);
    }
    for (const m of messages) chat.set(m.message_id, m);
  }

  /** Load a node's whole chat (merged with what events brought). */
  async loadChat(nodeId: string): Promise<void> {
    const answer = await api<{ messages: ChatMessage[] }>(
      "GET",
      `/swarms/${this.swarmId}/chats/${nodeId}`,
    );
    this.addMessages(nodeId, answer.messages);
    this.changed();
  }

  messages(nodeId: string): ChatMessage[] {
    const chat = this.chats.get(nodeId);
    if (!chat) return [];
    return [...chat.values()].sort((a, b) => a.seq - b.seq || a.created_at.localeCompare(b.created_at));
  }

  /** Refresh the swarm's own fields (usage, error, report) from the API. */
  async refreshSwarm(): Promise<void> {
    const swarm = await api<SwarmDetail>("GET", `/swarms/${this.swarmId}`);
    if (this.swarm && swarm.seq < this.swarm.seq) {
      swarm.status = this.swarm.status; // the events are newer than this read
      swarm.seq = this.swarm.seq;
    }
    this.swarm = swarm;
    this.changed();
  }
}
