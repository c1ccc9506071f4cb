// A small, safe Markdown renderer for card `detail` (CDS Hooks: GitHub Flavored Markdown).
//
// Safety by construction: the text is never parsed as HTML. Every node is made with
// document.createElement and every piece of card text goes in through textContent, so `<script>`,
// `<img onerror=...>` and friends show up as the literal text they are. Links are kept only for
// absolute http(s) URLs; anything else (javascript:, data:, relative) is rendered as plain text.
//
// Supported: paragraphs, hard line breaks, # headings, - * + and 1. lists (one level, nested by
// indentation), > quotes, ``` code blocks, --- rules, pipe tables, and inline **bold**, *italic*,
// _italic_, ~~strike~~, `code`, [text](url) and <https://autolinks>. Unknown syntax stays text.
(function (global) {
  "use strict";

  function el(tag, text) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function safeUrl(raw) {
    try {
      const url = new URL(raw);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function link(label, href) {
    const a = el("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    renderInline(label, a);
    return a;
  }

  // Inline tokens, tried in order at each position; the earliest match wins.
  const INLINE = [
    { re: /`([^`]+)`/, make: (m) => el("code", m[1]) },
    { re: /\*\*([^*]+?)\*\*|__([^_]+?)__/, make: (m) => wrap("strong", m[1] || m[2]) },
    { re: /~~([^~]+?)~~/, make: (m) => wrap("del", m[1]) },
    { re: /\*([^*\s][^*]*?)\*|\b_([^_\s][^_]*?)_\b/, make: (m) => wrap("em", m[1] || m[2]) },
    {
      re: /\[([^\]]+)\]\(\s*([^)\s]+)(?:\s+"[^"]*")?\s*\)/,
      make: (m) => {
        const href = safeUrl(m[2]);
        return href ? link(m[1], href) : document.createTextNode(m[1] + " (" + m[2] + ")");
      },
    },
    {
      re: /<(https?:\/\/[^\s<>]+)>/,
      make: (m) => {
        const href = safeUrl(m[1]);
        return href ? link(m[1], href) : document.createTextNode(m[0]);
      },
    },
  ];

  function wrap(tag, inner) {
    const node = el(tag);
    renderInline(inner, node);
    return node;
  }

  function renderInline(text, parent) {
    let rest = text;
    while (rest.length) {
      let best = null;
      for (const tok of INLINE) {
        const m = tok.re.exec(rest);
        if (m && (best === null || m.index < best.m.index)) best = { m, tok };
      }
      if (!best) {
        parent.appendChild(document.createTextNode(rest));
        return;
      }
      if (best.m.index > 0) parent.appendChild(document.createTextNode(rest.slice(0, best.m.index)));
      parent.appendChild(best.tok.make(best.m));
      rest = rest.slice(best.m.index + best.m[0].length);
    }
  }

  // Lines of a paragraph: a line ending in two spaces or a backslash is a hard break (GFM).
  function renderLines(lines, parent) {
    lines.forEach((line, i) => {
      const hard = /( {2,}|\\)$/.test(line);
      renderInline(line.replace(/( {2,}|\\)$/, "").trim(), parent);
      if (i < lines.length - 1) parent.appendChild(hard ? el("br") : document.createTextNode(" "));
    });
  }

  const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
  const TABLE_SEP = /^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$/;

  function splitRow(line) {
    return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
  }

  function renderList(lines, start, parent) {
    const first = LIST_ITEM.exec(lines[start]);
    const indent = first[1].length;
    const ordered = /\d/.test(first[2]);
    const list = el(ordered ? "ol" : "ul");
    let i = start;
    let item = null;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) break;
      const m = LIST_ITEM.exec(line);
      if (m && m[1].length > indent && item) {
        i = renderList(lines, i, item);
        continue;
      }
      if (m && m[1].length === indent && /\d/.test(m[2]) === ordered) {
        item = el("li");
        renderInline(m[3], item);
        list.appendChild(item);
      } else if (!m && item && /^\s+/.test(line)) {
        item.appendChild(document.createTextNode(" "));
        renderInline(line.trim(), item);
      } else {
        break;
      }
      i += 1;
    }
    parent.appendChild(list);
    return i;
  }

  function render(markdown) {
    const root = document.createDocumentFragment();
    const lines = String(markdown == null ? "" : markdown).replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) {
        i += 1;
        continue;
      }
      const fence = /^\s*(```|~~~)/.exec(line);
      if (fence) {
        const code = [];
        i += 1;
        while (i < lines.length && !lines[i].trim().startsWith(fence[1])) code.push(lines[i++]);
        i += 1;
        const pre = el("pre");
        pre.appendChild(el("code", code.join("\n")));
        root.appendChild(pre);
        continue;
      }
      const heading = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
      if (heading) {
        const h = el("h" + Math.min(6, heading[1].length + 2)); // card headings sit below the summary
        renderInline(heading[2], h);
        root.appendChild(h);
        i += 1;
        continue;
      }
      if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
        root.appendChild(el("hr"));
        i += 1;
        continue;
      }
      if (LIST_ITEM.test(line)) {
        i = renderList(lines, i, root);
        continue;
      }
      if (/^\s*>/.test(line)) {
        const quoted = [];
        while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ""));
        const bq = el("blockquote");
        bq.appendChild(render(quoted.join("\n")));
        root.appendChild(bq);
        continue;
      }
      if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1])) {
        const table = el("table");
        const head = el("tr");
        splitRow(line).forEach((c) => {
          const th = el("th");
          renderInline(c, th);
          head.appendChild(th);
        });
        const thead = el("thead");
        thead.appendChild(head);
        table.appendChild(thead);
        const body = el("tbody");
        i += 2;
        while (i < lines.length && lines[i].includes("|") && lines[i].trim()) {
          const tr = el("tr");
          splitRow(lines[i++]).forEach((c) => {
            const td = el("td");
            renderInline(c, td);
            tr.appendChild(td);
          });
          body.appendChild(tr);
        }
        table.appendChild(body);
        root.appendChild(table);
        continue;
      }
      const para = [];
      while (
        i < lines.length && lines[i].trim() && !LIST_ITEM.test(lines[i]) && !/^\s*(#{1,6}\s|>|```|~~~)/.test(lines[i])
      ) {
        para.push(lines[i++]);
      }
      if (!para.length) para.push(lines[i++]); // never stall on a line no rule takes
      const p = el("p");
      renderLines(para, p);
      root.appendChild(p);
    }
    return root;
  }

  global.CdsMarkdown = { render, safeUrl };
})(window);
