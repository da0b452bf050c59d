// The API's shapes (docs/api.md, docs/events.md), as far as the console reads them.

export type SwarmStatus =
  | "created"
  | "running"
  | "paused"
  | "waiting_for_user"
  | "completed"
  | "failed";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  llm_calls: number;
}

export interface SwarmSummary {
  swarm_id: string;
  goal: string;
  status: SwarmStatus;
  spawned: boolean;
  failed_nodes: number;
  error: string | null;
  paused_reason: string | null;
  // A fork's source and the step it was copied after.
  forked_from: { swarm_id: string; seq: number } | null;
  created_at: string;
  updated_at: string;
}

export interface SwarmDetail extends SwarmSummary {
  root_node_id: string | null;
  seq: number;
  node_counts: Record<string, number>;
  node_count: number;
  usage: Usage;
  final_report: string | null;
}

export interface Interrupt {
  interrupt_id: string;
  node_id: string;
  node_name: string;
  question: string;
  created_at: string;
  status: "open" | "answered" | "cancelled";
  answer_message_ids: string[];
  answered_at: string | null;
}

export type Lifecycle =
  | "spawned"
  | "running"
  | "waiting_for_children"
  | "waiting_for_user"
  | "terminated"
  | "failed";

export interface NodeView {
  node_id: string;
  parent_id: string | null;
  children_ids: string[];
  depth: number;
  action: string;
  name: string;
  directive: string;
  lifecycle: Lifecycle;
  report: string | null;
  error: string | null;
  usage: Usage;
  interrupt: Interrupt | null;
  chat_length: number;
  created_at: string;
  updated_at: string;
}

export interface LogEntry {
  node_id: string;
  kind: "log" | "journal";
  level: string;
  message: string;
  data: Record<string, unknown>;
  at: string;
  seq: number;
}

export interface NodeDetail extends NodeView {
  logs: LogEntry[];
  journal: LogEntry[];
}

export interface ChatMessage {
  message_id: string;
  node_id: string;
  role: "agent" | "user";
  content: string;
  created_at: string;
  seq: number;
}

export interface SwarmEvent {
  type: string;
  swarm_id: string;
  seq: number;
  index: number;
  at: string;
  data: Record<string, any>;
}

export interface TokenResponse {
  user_id: string;
  username: string;
  access_token: string;
  expires_in: number;
}
