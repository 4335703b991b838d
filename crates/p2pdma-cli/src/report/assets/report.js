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
  // Groups (VFs the kernel cannot tell apart): every device's representative, each
  // representative's members in address order. A row or column is a group, folded, or one
  // member of an unfolded group (m >= 0).
  var gof = M.group_of;
  var members = new Map();
  gof.forEach(function (g, i) {
    if (!members.has(g)) members.set(g, []);
    members.get(g).push(i);
  });
  function size(rep) { return members.get(rep).length; }
  var rows = M.providers.map(function (d, g) { return { g: g, m: -1 }; });
  var cols = M.clients.map(function (d, g) { return { g: g, m: -1 }; });

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
  // A folded member is drawn as its representative's card.
  function nodeId(r) { return r >= 0 ? 'n' + gof[r] : 'h' + (-1 - r); }
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
  // A header: the device, or a folded group as `nic0-vf0 +254 VFs`.
  function headLabel(at, list) {
    var rep = list[at.g];
    if (at.m >= 0) return short(at.m);
    var n = size(rep);
    return n > 1 ? short(rep) + ' +' + (n - 1) + ' VFs' : short(rep);
  }
  // The pair a cell stands for, its verdict, and the pair that verdict was explained for
  // (whose own addresses in the verdict stand for this pair's: `who`).
  function pairAt(ri, ci) {
    var row = rows[ri], col = cols[ci];
    if (!row || !col) return null;
    var rp = M.providers[row.g], rc = M.clients[col.g];
    var p = row.m >= 0 ? row.m : rp;
    var c = col.m;
    var mine = members.get(rc);
    if (c < 0) c = rp === rc && mine.length > 1 ? (mine[0] === p ? mine[1] : mine[0]) : rc;
    var vi = M.cells[row.g][col.g], ep = rp, ec = rc;
    if (p === c && M.own[row.g] != null) {
      vi = M.own[row.g];
      ec = rp;
    } else if (rp === rc && p !== c) {
      ep = mine[0];
      ec = mine[1];
    }
    var who = function (i) { return i === ep ? p : i === ec ? c : i; };
    return { p: p, c: c, v: M.verdicts[vi], who: who };
  }
  function commonOf(at) {
    var v = at.v;
    return v.common_upstream != null && byBdf.has(v.common_upstream) ? at.who(byBdf.get(v.common_upstream)) : undefined;
  }
  // Unfolds a folded group's row (or column) into its members, or folds it back.
  function toggle(list, lines, k) {
    var g = lines[k].g, first = k;
    while (first > 0 && lines[first - 1].g === g) first--;
    var n = 0;
    while (first + n < lines.length && lines[first + n].g === g) n++;
    var folded = lines[first].m < 0;
    var put = folded ? members.get(list[g]).map(function (m) { return { g: g, m: m }; }) : [{ g: g, m: -1 }];
    lines.splice.apply(lines, [first, n].concat(put));
    picked = null;
    clear();
    table.setAttribute('aria-rowcount', rows.length + 1);
    table.setAttribute('aria-colcount', cols.length + 1);
    drawMatrix(true);
  }
  // The hardware path class (`nvidia-smi topo -m`), as p2pdma_core::pathclass derives it:
  // switches (upstream ports) on the path to the common device, else host bridge and NUMA.
  var layer = 'verdict';
  function pathClass(p, c, common) {
    if (p === c) return 'X';
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
    cols.forEach(function (at) { CW = Math.max(CW, headLabel(at, M.clients).length * 8 + 16); });
    table.style.setProperty('--cw', CW + 'px');
  }
  function drawMatrix(force) {
    if (!table) return;
    var P = rows.length, C = cols.length;
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
      var col = cols[c], cdev = col.m >= 0 ? col.m : M.clients[col.g];
      th.appendChild(el('span', '', headLabel(col, M.clients)));
      th.title = devs[cdev].bdf;
      if (size(M.clients[col.g]) > 1) {
        th.classList.add('grp');
        th.title += col.m < 0 ? ': click to show every VF' : ': click to fold the VFs';
      }
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
      var line = rows[r], rdev = line.m >= 0 ? line.m : M.providers[line.g];
      var rh = el('th', '', headLabel(line, M.providers));
      rh.title = devs[rdev].bdf;
      if (size(M.providers[line.g]) > 1) {
        rh.classList.add('grp');
        rh.title += line.m < 0 ? ': click to show every VF' : ': click to fold the VFs';
      }
      rh.scope = 'row';
      rh.setAttribute('aria-colindex', 1);
      if (picked && picked[0] === r) rh.classList.add('sel');
      tr.appendChild(rh);
      if (c0 > 0) tr.appendChild(padCell('td', c0 * CW));
      for (c = c0; c < c1; c++) {
        var at = pairAt(r, c), v = at.v;
        var same = at.p === at.c;
        var td;
        if (layer === 'path') {
          var pc = pathClass(at.p, at.c, commonOf(at));
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
    var at = pairAt(pi, ci);
    if (!at) return;
    clear();
    var p = at.p, c = at.c, v = at.v;
    var pb = devs[p].bdf, cb = devs[c].bdf;
    var common = commonOf(at);
    var path = pathOf(p, c, common);
    var redirect = new Set(v.acs_redirect.map(function (r) { return at.who(byBdf.get(r.device)); }));

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
      var node = function (i) { return document.getElementById(nodeId(i)); };
      if (common !== undefined) mark(node(common), 'common');
      mark(node(p), 'sel-p');
      mark(node(c), 'sel-c');
      redirect.forEach(function (i) { mark(node(i), 'redirect'); });
      if (p === c) {
        tag(node(p), 'PROVIDER = CLIENT');
      } else if (gof[p] === gof[c]) {
        tag(node(p), 'PROVIDER, CLIENT: VFS OF ONE GROUP');
      } else {
        tag(node(p), 'PROVIDER');
        tag(node(c), 'CLIENT');
        if (common !== undefined && !redirect.has(common)) tag(node(common), 'COMMON');
      }
      redirect.forEach(function (i) {
        tag(node(i), i === common ? 'COMMON · ACS REDIRECT' : 'ACS REDIRECT', 'redirect');
      });
      scrollToNode(node(p));
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
      if (at) return select(at[0], at[1], true);
      // A group's header unfolds it into its members, or folds it back.
      var th = e.target.closest('th.grp');
      if (!th) return;
      if (th.scope === 'row') toggle(M.providers, rows, parseInt(th.parentElement.getAttribute('aria-rowindex'), 10) - 2);
      else toggle(M.clients, cols, parseInt(th.getAttribute('aria-colindex'), 10) - 2);
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
      var pi = Math.min(rows.length - 1, Math.max(0, at[0] + (picked ? step[0] : 0)));
      var ci = Math.min(cols.length - 1, Math.max(0, at[1] + (picked ? step[1] : 0)));
      select(pi, ci, false);
    });
    // Tooltips on demand rather than a title on every cell.
    table.addEventListener('mouseover', function (e) {
      var at = cellAt(e.target);
      if (!at || at[2].title) return;
      var pair = pairAt(at[0], at[1]), v = pair.v;
      at[2].title = label(pair.p) + ' → ' + label(pair.c) + ': ' + MAP[v.map_type] +
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
    var want = [find(m[1]), find(m[2])];
    // The row and column of the pair; a member of a folded group unfolds it.
    var line = function (list, lines, dev, k) {
      var g = list.indexOf(dev < 0 ? -1 : gof[dev]);
      if (g < 0) return -1;
      var at = lines.findIndex(function (x) { return x.g === g; });
      if (size(list[g]) > 1 && (dev !== list[g] || (k === 1 && gof[want[0]] === gof[dev]))) {
        toggle(list, lines, at);
        at = lines.findIndex(function (x) { return x.m === dev; });
      }
      return at;
    };
    var pi = line(M.providers, rows, want[0], 0), ci = line(M.clients, cols, want[1], 1);
    if (pi >= 0 && ci >= 0) select(pi, ci, false);
  }
  document.documentElement.setAttribute('data-ready', '1');
  if (window.performance && performance.mark) performance.mark('p2pdma-ready');
})();
