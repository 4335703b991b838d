// p2pdma report: selecting a matrix cell lights its path up in the tree and explains it;
// clicking a device in the tree shows its facts. Reads the JSON block written by
// report/data.rs; builds every element with textContent, never parses data as HTML.
(function () {
  'use strict';
  var SVG = 'http://www.w3.org/2000/svg';
  var data = JSON.parse(document.getElementById('p2pdma-data').textContent);
  var M = data.matrix;
  // Rows of cells arrive run-length encoded: [verdict, count, verdict, count, ...].
  M.cells = M.cells.map(function (runs) {
    var row = [];
    for (var i = 0; i < runs.length; i += 2) {
      for (var n = 0; n < runs[i + 1]; n++) row.push(runs[i]);
    }
    return row;
  });
  var devs = data.devices;
  var tree = document.getElementById('tree');
  var table = document.getElementById('matrix');
  var panel = document.getElementById('details');
  var scroller = document.getElementById('tree-scroll');
  var byBdf = new Map();
  devs.forEach(function (d, i) { byBdf.set(d.bdf, i); });
  var MAP = { bus_addr: 'bus address', thru_host_bridge: 'through the host bridge', not_supported: 'not supported' };
  var CLS = { bus_addr: 'm-b', thru_host_bridge: 'm-h', not_supported: 'm-n' };
  var lit = [];
  var tags = [];
  var picked = null; // the selected cell: [provider row, client column]

  // A pair's path, as report/data.rs `path` builds it: the provider up to the common
  // device, then down to the client; without one, through the host bridge(s).
  function chain(i, stop) {
    var out = [];
    while (i >= 0 && out.length <= devs.length) {
      out.push(i);
      if (i === stop) break;
      i = M.walk_up[i];
    }
    return out;
  }
  function pathOf(p, c, common) {
    var up = chain(p, common === undefined ? -2 : common), down;
    if (common !== undefined) {
      down = chain(c, common);
      down.pop();
    } else {
      var hp = M.host_bridge[p], hc = M.host_bridge[c];
      up.push(-1 - hp);
      if (hc !== hp) up.push(-1 - hc);
      down = chain(c, -2);
    }
    return up.concat(down.reverse());
  }
  function label(i) { return devs[i].name || devs[i].bdf; }
  function nodeId(r) { return r >= 0 ? 'n' + r : 'h' + (-1 - r); }
  function nodeLabel(r) { return r >= 0 ? label(r) : data.host_bridges[-1 - r].name; }
  function fill(t, p, c) { return t.split('\u0001').join(p).split('\u0002').join(c); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function mark(e, cls) {
    if (!e) return;
    e.classList.add(cls);
    lit.push([e, cls]);
  }
  function clear() {
    lit.forEach(function (x) { x[0].classList.remove(x[1]); });
    lit = [];
    tags.forEach(function (t) { t.remove(); });
    tags = [];
    if (tree) tree.classList.remove('dim');
  }
  // A small label on a card's top right corner ("PROVIDER", "COMMON", ...).
  function tag(node, text, cls) {
    if (!node) return;
    var box = node.querySelector('rect.box');
    var g = document.createElementNS(SVG, 'g');
    g.setAttribute('class', 'tag ' + (cls || ''));
    var r = document.createElementNS(SVG, 'rect');
    r.setAttribute('height', 14);
    r.setAttribute('rx', 3);
    var t = document.createElementNS(SVG, 'text');
    t.setAttribute('x', 6);
    t.setAttribute('y', 10.5);
    t.textContent = text;
    g.appendChild(r);
    g.appendChild(t);
    node.appendChild(g);
    var w = t.getComputedTextLength() + 12;
    r.setAttribute('width', w);
    g.setAttribute('transform', 'translate(' + (parseFloat(box.getAttribute('width')) - w - 6) + ',5)');
    tags.push(g);
  }
  function scrollToNode(node) {
    if (!node || !scroller) return;
    var s = scroller.getBoundingClientRect();
    var n = node.getBoundingClientRect();
    if (n.top < s.top || n.bottom > s.bottom) {
      scroller.scrollTop += n.top - s.top - s.height / 3;
    }
    if (n.left < s.left || n.right > s.right) {
      scroller.scrollLeft += n.left - s.left - 20;
    }
  }
  function heading(text) { return el('h3', '', text); }
  function list(cls, items) {
    var ul = el('ul', cls);
    items.forEach(function (t) { ul.appendChild(el('li', '', t)); });
    return ul;
  }
  function setHash(h) {
    try { history.replaceState(null, '', h); } catch (e) { /* file: URLs may refuse */ }
  }

  // The matrix is drawn in windows: only the cells in view, and a margin, exist in the
  // DOM (padding cells stand for the rest), so tens of thousands of cells stay fast.
  // aria-rowindex / aria-colindex address every cell (header row and column are 1).
  var CW = 54, RH = 26, OVER = 8;
  var box = document.getElementById('matrix-scroll');
  var drawn = null;
  function short(i) {
    var b = devs[i].bdf;
    return devs[i].name || (b.indexOf('0000:') === 0 ? b.slice(5) : b);
  }
  // The hardware path class (`nvidia-smi topo -m`), as p2pdma_core::pathclass derives it:
  // switches (upstream ports) on the path to the common device, else host bridge and NUMA.
  var layer = 'verdict';
  function pathClass(p, c, v) {
    if (p === c) return 'X';
    var common = v.common_upstream != null ? byBdf.get(v.common_upstream) : undefined;
    if (common !== undefined) {
      var n = 0;
      pathOf(p, c, common).forEach(function (i) { if (i >= 0 && devs[i].port_type === 'switch_upstream') n++; });
      return n <= 1 ? 'PIX' : 'PXB';
    }
    if (M.host_bridge[p] === M.host_bridge[c]) return 'PHB';
    var a = devs[p].numa_node, b = devs[c].numa_node;
    return a != null && b != null && a >= 0 && b >= 0 && a !== b ? 'SYS' : 'NODE';
  }
  function cellText(v, same) {
    if (same) return 'SELF';
    if (v.map_type === 'bus_addr') return 'BUS' + v.distance;
    if (v.map_type === 'thru_host_bridge') return 'HB' + v.distance;
    return 'NO';
  }
  function padCell(tag, width) {
    var e = el(tag, 'pad');
    e.style.width = e.style.minWidth = e.style.maxWidth = width + 'px';
    return e;
  }
  function padRow(rows, cols) {
    var tr = el('tr', 'pad');
    var td = el('td');
    td.colSpan = cols;
    td.style.height = rows * RH + 'px';
    tr.appendChild(td);
    return tr;
  }
  if (table && !table.classList.contains('vert')) {
    // Few columns, short names: written across, each as wide as the longest name.
    M.clients.forEach(function (c) { CW = Math.max(CW, short(c).length * 8 + 16); });
    table.style.setProperty('--cw', CW + 'px');
  }
  function drawMatrix(force) {
    if (!table) return;
    var P = M.providers.length, C = M.clients.length;
    var vw = Math.max(box.clientWidth, 600), vh = Math.max(box.clientHeight, window.innerHeight);
    var c0 = Math.max(0, Math.floor(box.scrollLeft / CW) - OVER);
    var c1 = Math.min(C, Math.ceil((box.scrollLeft + vw) / CW) + OVER);
    var r0 = Math.max(0, Math.floor(box.scrollTop / RH) - OVER);
    var r1 = Math.min(P, Math.ceil((box.scrollTop + vh) / RH) + OVER);
    if (!force && drawn && drawn[0] === r0 && drawn[1] === r1 && drawn[2] === c0 && drawn[3] === c1) return;
    drawn = [r0, r1, c0, c1];
    var head = table.tHead.rows[0];
    while (head.cells.length > 1) head.deleteCell(1);
    if (c0 > 0) head.appendChild(padCell('th', c0 * CW));
    for (var c = c0; c < c1; c++) {
      var th = el('th');
      th.appendChild(el('span', '', short(M.clients[c])));
      th.title = devs[M.clients[c]].bdf;
      th.scope = 'col';
      th.setAttribute('aria-colindex', c + 2);
      if (picked && picked[1] === c) th.classList.add('sel');
      head.appendChild(th);
    }
    if (c1 < C) head.appendChild(padCell('th', (C - c1) * CW));
    var span = c1 - c0 + 3;
    var body = document.createElement('tbody');
    if (r0 > 0) body.appendChild(padRow(r0, span));
    for (var r = r0; r < r1; r++) {
      var tr = el('tr');
      tr.setAttribute('aria-rowindex', r + 2);
      var rh = el('th', '', short(M.providers[r]));
      rh.title = devs[M.providers[r]].bdf;
      rh.scope = 'row';
      rh.setAttribute('aria-colindex', 1);
      if (picked && picked[0] === r) rh.classList.add('sel');
      tr.appendChild(rh);
      if (c0 > 0) tr.appendChild(padCell('td', c0 * CW));
      var row = M.cells[r];
      for (c = c0; c < c1; c++) {
        var v = M.verdicts[row[c]];
        var same = M.providers[r] === M.clients[c];
        var td;
        if (layer === 'path') {
          var pc = pathClass(M.providers[r], M.clients[c], v);
          td = el('td', 'pc-' + pc, pc);
        } else {
          td = el('td', same ? 'm-s' : CLS[v.map_type], cellText(v, same) + (v.certain || same ? '' : '?'));
          if (!v.certain && !same) td.classList.add('u');
        }
        if (picked && picked[0] === r && picked[1] === c) td.classList.add('sel');
        td.setAttribute('aria-colindex', c + 2);
        tr.appendChild(td);
      }
      if (c1 < C) tr.appendChild(padCell('td', (C - c1) * CW));
      body.appendChild(tr);
    }
    if (r1 < P) body.appendChild(padRow(P - r1, span));
    table.replaceChild(body, table.tBodies[0]);
  }
  // Brings a cell into view in the matrix (for #pair= and selections from elsewhere).
  function revealCell(pi, ci) {
    var x = ci * CW, y = pi * RH;
    if (x < box.scrollLeft || x > box.scrollLeft + box.clientWidth - 2 * CW - 120) box.scrollLeft = Math.max(0, x - 2 * CW);
    if (y < box.scrollTop || y > box.scrollTop + box.clientHeight - 2 * RH - 140) box.scrollTop = Math.max(0, y - 2 * RH);
  }
  function cellAt(target) {
    var td = target.closest('td');
    if (!td || !td.hasAttribute('aria-colindex')) return null;
    return [parseInt(td.parentElement.getAttribute('aria-rowindex'), 10) - 2, parseInt(td.getAttribute('aria-colindex'), 10) - 2, td];
  }

  function select(pi, ci, clicked) {
    var row = M.cells[pi];
    if (!row || row[ci] === undefined) return;
    clear();
    var p = M.providers[pi], c = M.clients[ci];
    var v = M.verdicts[row[ci]];
    var pb = devs[p].bdf, cb = devs[c].bdf;
    var common = v.common_upstream != null ? byBdf.get(v.common_upstream) : undefined;
    var path = pathOf(p, c, common);
    var redirect = new Set(v.acs_redirect.map(function (r) { return byBdf.get(r.device); }));

    // The tree: nodes and the connectors between consecutive path nodes.
    if (tree) {
      tree.classList.add('dim');
      var ids = new Set(path.map(nodeId));
      var edges = tree.querySelector('g.edges');
      path.forEach(function (r) {
        var id = nodeId(r);
        mark(document.getElementById(id), 'on');
        var e = document.getElementById('e' + id);
        if (e && ids.has(e.getAttribute('data-p'))) {
          mark(e, 'on');
          edges.appendChild(e); // draw it above its grey siblings
        }
      });
      if (common !== undefined) mark(document.getElementById('n' + common), 'common');
      mark(document.getElementById('n' + p), 'sel-p');
      mark(document.getElementById('n' + c), 'sel-c');
      redirect.forEach(function (i) { mark(document.getElementById('n' + i), 'redirect'); });
      if (p === c) {
        tag(document.getElementById('n' + p), 'PROVIDER = CLIENT');
      } else {
        tag(document.getElementById('n' + p), 'PROVIDER');
        tag(document.getElementById('n' + c), 'CLIENT');
        if (common !== undefined && !redirect.has(common)) tag(document.getElementById('n' + common), 'COMMON');
      }
      redirect.forEach(function (i) {
        tag(document.getElementById('n' + i), i === common ? 'COMMON · ACS REDIRECT' : 'ACS REDIRECT', 'redirect');
      });
      scrollToNode(document.getElementById('n' + p));
    }

    // The matrix: the cell and its headers.
    picked = [pi, ci];
    if (table) {
      if (!clicked) revealCell(pi, ci);
      drawMatrix(true);
    }

    // The panel.
    panel.textContent = '';
    panel.appendChild(el('h2', '', 'Verdict'));
    var pair = el('div', 'pair');
    pair.appendChild(el('span', 'who', 'provider'));
    pair.appendChild(el('b', '', label(p)));
    pair.appendChild(el('code', '', pb));
    pair.appendChild(el('span', 'who', p === c ? '· its own memory' : '→ client'));
    if (p !== c) {
      pair.appendChild(el('b', '', label(c)));
      pair.appendChild(el('code', '', cb));
    }
    panel.appendChild(pair);
    var self = p === c;
    var text = self ? "the provider's own memory" : MAP[v.map_type];
    if (v.distance != null) text += ' · distance ' + v.distance;
    var verdict = el('div', 'verdict ' + (self ? 'm-s' : CLS[v.map_type]), text);
    verdict.id = 'verdict';
    panel.appendChild(verdict);
    if (!v.certain) panel.appendChild(el('span', 'uncertain', 'uncertain: ACS could not be read'));

    panel.appendChild(heading('Path'));
    var ol = el('ol', 'path');
    path.forEach(function (r) {
      var li = el('li');
      li.appendChild(el('span', '', nodeLabel(r)));
      if (r < 0) li.className = 'hbr';
      else if (redirect.has(r)) li.className = 'redirect';
      else if (r === common && !self) li.className = 'common';
      li.setAttribute('data-node', r >= 0 ? devs[r].bdf : data.host_bridges[-1 - r].name);
      li.title = r >= 0 ? devs[r].bdf : 'host bridge';
      ol.appendChild(li);
    });
    panel.appendChild(ol);
    var fix = function (i) { return fill(M.texts[i], pb, cb); };
    if (v.reasons.length) {
      panel.appendChild(heading('Why'));
      panel.appendChild(list('why', v.reasons.map(fix)));
    }
    if (v.fixes.length) {
      panel.appendChild(heading('Fix'));
      panel.appendChild(list('fix', v.fixes.map(fix)));
    }
    if (v.kernel_log.length) {
      panel.appendChild(heading('Kernel log'));
      panel.appendChild(el('pre', 'klog', v.kernel_log.map(fix).join('\n')));
    }
    var cmd = el('p', 'cmd', 'In a terminal: ');
    cmd.appendChild(el('code', '', 'p2pdma check ' + (devs[p].name || pb) + ' ' + (devs[c].name || cb)));
    panel.appendChild(cmd);
    setHash('#pair=' + pb + ',' + cb);
  }

  function showDevice(ref) {
    clear();
    var node = document.getElementById(nodeId(ref));
    mark(node, 'picked');
    panel.textContent = '';
    if (ref < 0) {
      var hb = data.host_bridges[-1 - ref];
      panel.appendChild(el('h2', '', 'Host bridge ' + hb.name));
      var w = hb.whitelist;
      var dl0 = el('dl', 'dev');
      [['identified by', w.root_device ? w.root_device + ' (' + w.id + ')' : 'nothing: no 00.0 or root port first on its root bus'],
       ['whitelist', w.entry ? w.entry + (w.same_host_bridge_only ? ' (same host bridge only)' : '') : 'not on the kernel\'s P2PDMA whitelist'],
       ['domain, root bus', hb.domain + ', ' + hb.bus]].forEach(function (kv) {
        dl0.appendChild(el('dt', '', kv[0]));
        dl0.appendChild(el('dd', '', kv[1]));
      });
      panel.appendChild(dl0);
      return;
    }
    var d = devs[ref];
    panel.appendChild(el('h2', '', (d.name ? d.name + ' · ' : '') + d.bdf));
    var rows = [];
    var hex = function (n, w) { return ('0000' + n.toString(16)).slice(-w); };
    rows.push(['ID', hex(d.vendor, 4) + ':' + hex(d.device, 4) + ', class ' + hex(d.class, 6)]);
    if (d.vendor_name || d.device_name) rows.push(['name', [d.vendor_name, d.device_name].filter(Boolean).join(' ')]);
    if (d.port_type) rows.push(['port type', d.port_type.replace(/_/g, ' ')]);
    rows.push(['driver', d.driver || '-']);
    if (d.upstream) rows.push(['upstream bridge', d.upstream]);
    if (d.physfn) rows.push(['physical function', d.physfn]);
    if (d.link) {
      var l = d.link;
      rows.push(['link', (l.current_speed || '?') + ' x' + (l.current_width || '?') + ' (max ' + (l.max_speed || '?') + ' x' + (l.max_width || '?') + ')']);
    }
    var acs = d.acs;
    if (acs.state === 'present') rows.push(['ACS', 'cap 0x' + hex(acs.cap, 4) + ', ctrl 0x' + hex(acs.ctrl, 4) + ' at 0x' + acs.offset.toString(16) + ((acs.ctrl & 0x2c) ? ' (redirects peer traffic)' : '')]);
    else if (acs.state === 'unknown') rows.push(['ACS', 'unknown (needs root)']);
    else rows.push(['ACS', 'no capability']);
    if (acs.state === 'present') {
      // As `lspci -vv` prints them (p2pdma_core::config::acs_bits::lspci).
      var bits = function (v) {
        return ['SrcValid', 'TransBlk', 'ReqRedir', 'CmpltRedir', 'UpstreamFwd', 'EgressCtrl', 'DirectTrans']
          .map(function (n, i) { return n + ((v >> i) & 1 ? '+' : '-'); }).join(' ');
      };
      rows.push(['ACSCap:', bits(acs.cap)]);
      rows.push(['ACSCtl:', bits(acs.ctrl)]);
    }
    if (d.iommu_group != null) rows.push(['IOMMU group', String(d.iommu_group)]);
    if (d.numa_node != null) rows.push(['NUMA node', String(d.numa_node)]);
    if (d.local_cpus) rows.push(['CPU affinity', d.local_cpus]);
    if (d.p2pmem) rows.push(['P2P memory', d.p2pmem.available + ' of ' + d.p2pmem.size + ' bytes free' + (d.p2pmem.published ? ', published' : ', not published')]);
    (d.bars || []).forEach(function (b) {
      rows.push(['BAR ' + b.index, '0x' + b.start.toString(16) + ', ' + b.size + ' bytes' + (b.memory ? (b.prefetchable ? ', prefetchable' : ', memory') : ', I/O') + (b.is_64 ? ', 64-bit' : '') +
        (b.bus_start != null && b.bus_start !== b.start ? ', bus address 0x' + b.bus_start.toString(16) : '')]);
    });
    var dl = el('dl', 'dev');
    rows.forEach(function (kv) {
      dl.appendChild(el('dt', '', kv[0]));
      dl.appendChild(el('dd', '', kv[1]));
    });
    panel.appendChild(dl);
    var pi = M.providers.indexOf(ref);
    if (pi >= 0) panel.appendChild(el('p', 'cmd', 'A provider: its row in the matrix shows whom it can serve.'));
  }

  if (table) {
    drawMatrix(true);
    // The layer toggle: redraw the cells in view with the other layer, swap the legends.
    document.querySelectorAll('#layers input').forEach(function (input) {
      input.addEventListener('change', function () {
        layer = input.value;
        document.getElementById('legend').hidden = layer === 'path';
        document.getElementById('legend-path').hidden = layer !== 'path';
        drawMatrix(true);
      });
    });
    var queued = false;
    box.addEventListener('scroll', function () {
      if (queued) return;
      queued = true;
      requestAnimationFrame(function () { queued = false; drawMatrix(false); });
    });
    window.addEventListener('resize', function () { drawMatrix(false); });
    table.addEventListener('click', function (e) {
      var at = cellAt(e.target);
      if (at) select(at[0], at[1], true);
    });
    // Arrow keys move the selection, Escape clears it.
    box.tabIndex = 0;
    box.setAttribute('aria-label', 'P2P matrix: arrow keys move the selected cell');
    box.addEventListener('keydown', function (e) {
      var step = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[e.key];
      if (e.key === 'Escape') {
        clear();
        picked = null;
        drawMatrix(true);
        panel.textContent = '';
        panel.appendChild(el('h2', '', 'Verdict'));
        panel.appendChild(el('p', 'hint', 'Select a cell of the matrix.'));
        return;
      }
      if (!step) return;
      e.preventDefault();
      var at = picked || [0, 0];
      var pi = Math.min(M.providers.length - 1, Math.max(0, at[0] + (picked ? step[0] : 0)));
      var ci = Math.min(M.clients.length - 1, Math.max(0, at[1] + (picked ? step[1] : 0)));
      select(pi, ci, false);
    });
    // Tooltips on demand rather than a title on every cell.
    table.addEventListener('mouseover', function (e) {
      var at = cellAt(e.target);
      if (!at || at[2].title) return;
      var v = M.verdicts[M.cells[at[0]][at[1]]];
      at[2].title = label(M.providers[at[0]]) + ' → ' + label(M.clients[at[1]]) + ': ' + MAP[v.map_type] +
        (v.distance != null ? ', distance ' + v.distance : '');
    });
  }
  if (tree) {
    tree.addEventListener('click', function (e) {
      var g = e.target.closest('g.node');
      if (!g) return;
      var id = g.id;
      showDevice(id[0] === 'n' ? parseInt(id.slice(1), 10) : -1 - parseInt(id.slice(1), 10));
    });
  }

  // #pair=PROVIDER,CLIENT (addresses or names) selects a cell when the page opens.
  var m = /^#pair=([^,]+),(.+)$/.exec(decodeURIComponent(location.hash || ''));
  if (m) {
    var find = function (s) {
      if (byBdf.has(s)) return byBdf.get(s);
      if (byBdf.has('0000:' + s)) return byBdf.get('0000:' + s);
      for (var i = 0; i < devs.length; i++) if (devs[i].name === s) return i;
      return -1;
    };
    var pi = M.providers.indexOf(find(m[1])), ci = M.clients.indexOf(find(m[2]));
    if (pi >= 0 && ci >= 0) select(pi, ci, false);
  }
  document.documentElement.setAttribute('data-ready', '1');
  if (window.performance && performance.mark) performance.mark('p2pdma-ready');
})();
