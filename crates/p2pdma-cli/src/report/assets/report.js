// p2pdma report: selecting a matrix cell lights its path up in the tree and explains it;
// clicking a device in the tree shows its facts. Reads the JSON block written by
// report/data.rs; builds every element with textContent, never parses data as HTML.
(function () {
  'use strict';
  var SVG = 'http://www.w3.org/2000/svg';
  var data = JSON.parse(document.getElementById('p2pdma-data').textContent);
  var M = data.matrix;
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

  function select(pi, ci, scroll) {
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
      if (scroll) scrollToNode(document.getElementById('n' + p));
    }

    // The matrix: the cell and its headers.
    if (table) {
      var tr = table.tBodies[0].rows[pi];
      mark(tr.cells[ci + 1], 'sel');
      mark(tr.cells[0], 'sel');
      mark(table.tHead.rows[0].cells[ci + 1], 'sel');
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
    if (d.iommu_group != null) rows.push(['IOMMU group', String(d.iommu_group)]);
    if (d.numa_node != null) rows.push(['NUMA node', String(d.numa_node)]);
    if (d.p2pmem) rows.push(['P2P memory', d.p2pmem.available + ' of ' + d.p2pmem.size + ' bytes free' + (d.p2pmem.published ? ', published' : ', not published')]);
    (d.bars || []).forEach(function (b) {
      rows.push(['BAR ' + b.index, '0x' + b.start.toString(16) + ', ' + b.size + ' bytes' + (b.memory ? (b.prefetchable ? ', prefetchable' : ', memory') : ', I/O')]);
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
    table.addEventListener('click', function (e) {
      var td = e.target.closest('td');
      if (!td) return;
      select(td.parentElement.sectionRowIndex, td.cellIndex - 1, true);
    });
    // Tooltips on demand: a title per cell in the page itself would weigh megabytes.
    table.addEventListener('mouseover', function (e) {
      var td = e.target.closest('td');
      if (!td || td.title) return;
      var pi = td.parentElement.sectionRowIndex, ci = td.cellIndex - 1;
      var v = M.verdicts[M.cells[pi][ci]];
      td.title = label(M.providers[pi]) + ' → ' + label(M.clients[ci]) + ': ' + MAP[v.map_type] +
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
    if (pi >= 0 && ci >= 0) select(pi, ci, true);
  }
  document.documentElement.setAttribute('data-ready', '1');
  if (window.performance && performance.mark) performance.mark('p2pdma-ready');
})();
