// The tree view: one shape per node, no words on it. Colour = lifecycle, shape = action; hover
// shows the name (an SVG <title>), a click selects the node. Laid out as a tidy tree: leaves in
// depth-first order, each parent centred over its children.

import { memo } from "preact/compat";
import type { NodeView } from "./types";

export const LIFECYCLE_COLOURS: Record<string, string> = {
  spawned: "#94a3b8",
  running: "#2563eb",
  waiting_for_children: "#7c3aed",
  waiting_for_user: "#ea580c",
  terminated: "#16a34a",
  failed: "#dc2626",
};
export const ACTIONS = ["plan", "ask_user", "execute"];

const GAP_X = 30;
const GAP_Y = 64;
const R = 10;

export interface Layout {
  at: Map<string, { x: number; y: number }>;
  width: number;
  height: number;
}

export function layout(nodes: NodeView[]): Layout {
  const byId = new Map(nodes.map((n) => [n.node_id, n]));
  const at = new Map<string, { x: number; y: number }>();
  let column = 0;
  let deepest = 0;
  const place = (node: NodeView, depth: number): number => {
    deepest = Math.max(deepest, depth);
    const children = node.children_ids.map((id) => byId.get(id)).filter((c): c is NodeView => !!c);
    let x: number;
    if (!children.length) {
      x = column++;
    } else {
      const xs = children.map((c) => place(c, depth + 1));
      x = (xs[0] + xs[xs.length - 1]) / 2;
    }
    at.set(node.node_id, { x, y: depth });
    return x;
  };
  const roots = nodes.filter((n) => !n.parent_id || !byId.has(n.parent_id));
  roots.forEach((root) => place(root, 0));
  for (const [id, p] of at) at.set(id, { x: (p.x + 0.5) * GAP_X, y: p.y * GAP_Y + GAP_Y / 2 });
  return { at, width: Math.max(column, 1) * GAP_X, height: (deepest + 1) * GAP_Y };
}

export function Shape({ action, colour, size = R }: { action: string; colour: string; size?: number }) {
  if (action === "plan") {
    const s = size * 1.25;
    return <polygon points={`0,${-s} ${s},0 0,${s} ${-s},0`} fill={colour} />;
  }
  if (action === "execute") {
    return <rect x={-size * 0.85} y={-size * 0.85} width={size * 1.7} height={size * 1.7} rx={2} fill={colour} />;
  }
  if (action === "ask_user") {
    return (
      <g>
        <circle r={size} fill={colour} />
        <path d={`M${-size * 0.45} ${size * 0.6} L${-size * 0.9} ${size * 1.2} L0 ${size * 0.9} Z`} fill={colour} />
      </g>
    );
  }
  return <circle r={size * 0.7} fill={colour} />;
}

interface TreeProps {
  nodes: NodeView[];
  selected: string | null;
  onSelect: (nodeId: string) => void;
}

export const Tree = memo(function Tree({ nodes, selected, onSelect }: TreeProps) {
  const { at, width, height } = layout(nodes);
  const edges = [];
  for (const node of nodes) {
    const from = node.parent_id ? at.get(node.parent_id) : undefined;
    const to = at.get(node.node_id);
    if (from && to) {
      edges.push(<line key={node.node_id} x1={from.x} y1={from.y} x2={to.x} y2={to.y} class="edge" />);
    }
  }
  return (
    <svg class="tree" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label="swarm tree">
      <g>{edges}</g>
      {nodes.map((node) => {
        const p = at.get(node.node_id);
        if (!p) return null;
        const open = node.interrupt?.status === "open";
        return (
          <g
            key={node.node_id}
            class={`node${node.node_id === selected ? " selected" : ""}${open ? " asking" : ""}`}
            transform={`translate(${p.x},${p.y})`}
            data-node-id={node.node_id}
            data-lifecycle={node.lifecycle}
            data-action={node.action}
            onClick={() => onSelect(node.node_id)}
          >
            <title>{node.name}</title>
            {node.node_id === selected ? <circle r={R * 1.8} class="halo" /> : null}
            <Shape action={node.action} colour={LIFECYCLE_COLOURS[node.lifecycle] ?? "#64748b"} />
          </g>
        );
      })}
    </svg>
  );
});

export function Legend() {
  return (
    <div class="legend">
      {Object.entries(LIFECYCLE_COLOURS).map(([name, colour]) => (
        <span key={name}>
          <svg width="14" height="14" viewBox="-7 -7 14 14">
            <circle r="6" fill={colour} />
          </svg>
          {name.replace(/_/g, " ")}
        </span>
      ))}
      {ACTIONS.map((action) => (
        <span key={action}>
          <svg width="18" height="18" viewBox="-9 -9 18 18">
            <Shape action={action} colour="#475569" size={6} />
          </svg>
          {action.replace(/_/g, " ")}
        </span>
      ))}
    </div>
  );
}
