// Search for the workbook's site: one entry per section (window.WORKBOOK_SEARCH_INDEX, written by
// tools/site/build.py), matched as phrases, not as loose words, so that a pasted message with its
// quotes, brackets and dots is found as it is.
//
// Ranking, for the longest part of the query found anywhere (the whole query, its last line, or
// the same without a leading "SomethingError: "; a query with your own key names is cut back to
// the part the notebooks have, at a word boundary):
//   1. sections with a cell that raises an error whose message contains it ("raises it");
//   2. sections whose prose, code or printed output contains it;
//   within each, a section whose heading names the message first, then the learning-path order;
//   3. otherwise, sections that contain every word of the query.
(function () {
  "use strict";
  var INDEX = (window.WORKBOOK_SEARCH_INDEX || { sections: [] }).sections;

  function norm(s) {
    return String(s)
      .toLowerCase()
      .replace(/[\u2018\u2019]/g, "'")
      .replace(/[\u201c\u201d]/g, '"')
      .replace(/\s+/g, " ")
      .trim();
  }

  var SECTIONS = INDEX.map(function (s) {
    return { s: s, x: norm(s.x), e: norm(s.e), h: norm(s.h), n: s.n || [] };
  });

  function found(phrase) {
    for (var i = 0; i < SECTIONS.length; i++) {
      if (SECTIONS[i].e.indexOf(phrase) >= 0 || SECTIONS[i].x.indexOf(phrase) >= 0) return true;
    }
    return false;
  }

  function count(phrase) {
    var n = 0;
    for (var i = 0; i < SECTIONS.length; i++) {
      if (SECTIONS[i].e.indexOf(phrase) >= 0 || SECTIONS[i].x.indexOf(phrase) >= 0) n++;
    }
    return n;
  }

  // The longest prefix of q found in some section, cut back to the end of a word or after a
  // punctuation mark (so `"module.` survives from `"module.encoder.weight"`).
  function longestPrefix(q) {
    if (!q) return "";
    if (found(q)) return q;
    var lo = 0, hi = q.length;
    while (hi - lo > 1) {
      var mid = (lo + hi) >> 1;
      if (found(q.slice(0, mid))) lo = mid; else hi = mid;
    }
    var p = q.slice(0, lo);
    for (var i = p.length; i > 0; i--) {
      var c = p.charAt(i - 1);
      if (c === " ") return p.slice(0, i - 1).trim();
      if (".:\"'()[],/=".indexOf(c) >= 0) return p.slice(0, i).trim();
    }
    return "";
  }

  function variants(raw) {
    var out = [norm(raw)];
    var lines = String(raw).split(/\n/).map(norm).filter(Boolean);
    for (var i = lines.length - 1; i >= 0; i--) out.push(lines[i]);
    out.slice().forEach(function (v) {
      var m = v.match(/^[\w.]*(?:error|exception|warning)\w*:\s*(.+)$/);
      if (m) out.push(m[1]);
    });
    return out.filter(function (v, i) { return v && out.indexOf(v) === i; });
  }

  function named(sec, full, phrase) {
    if (sec.h.indexOf(phrase) >= 0) return true;
    for (var i = 0; i < sec.n.length; i++) if (full.indexOf(sec.n[i]) >= 0) return true;
    return false;
  }

  function search(raw) {
    var full = norm(raw);
    if (!full) return { phrase: "", results: [] };
    // Of the query's variants (whole, last line first, without "SomethingError: "), the part
    // found in the fewest sections: the most specific one (a traceback's last line, not its
    // generic first line).
    var best = "", bestCount = 0;
    variants(raw).forEach(function (v) {
      var p = longestPrefix(v);
      if (!p || p.length < Math.min(v.length, 8)) return;
      var n = count(p);
      if (!best || n < bestCount || (n === bestCount && p.length > best.length)) {
        best = p;
        bestCount = n;
      }
    });
    var results = [];
    if (best) {
      var tierA = [], tierB = [];
      SECTIONS.forEach(function (sec) {
        if (sec.e.indexOf(best) >= 0) tierA.push(sec);
        else if (sec.x.indexOf(best) >= 0 || sec.h.indexOf(best) >= 0) tierB.push(sec);
      });
      var rank = function (a, b) {
        var na = named(a, full, best) ? 0 : 1, nb = named(b, full, best) ? 0 : 1;
        return na - nb || a.s.o - b.s.o;
      };
      tierA.sort(rank);
      tierB.sort(rank);
      tierA.forEach(function (sec) { results.push({ sec: sec, raises: true }); });
      tierB.forEach(function (sec) { results.push({ sec: sec, raises: false }); });
    }
    if (!results.length) {
      var words = full.split(/[^a-z0-9_]+/).filter(function (w) { return w.length > 1; });
      if (words.length) {
        var hits = SECTIONS.filter(function (sec) {
          return words.every(function (w) { return sec.x.indexOf(w) >= 0 || sec.h.indexOf(w) >= 0; });
        });
        hits.sort(function (a, b) {
          var ha = words.filter(function (w) { return a.h.indexOf(w) >= 0; }).length;
          var hb = words.filter(function (w) { return b.h.indexOf(w) >= 0; }).length;
          return hb - ha || a.s.o - b.s.o;
        });
        results = hits.map(function (sec) { return { sec: sec, raises: false }; });
        best = words[0];
      }
    }
    return { phrase: best, results: results };
  }

  function snippet(sec, phrase, raises) {
    var text = raises && sec.e.indexOf(phrase) >= 0 ? sec.s.e : sec.s.x;
    var flat = text.replace(/\s+/g, " ");
    var at = norm(flat).indexOf(phrase);
    if (at < 0) return document.createTextNode(flat.slice(0, 200));
    var start = Math.max(0, at - 80), end = Math.min(flat.length, at + phrase.length + 120);
    var span = document.createElement("span");
    span.appendChild(document.createTextNode((start > 0 ? "…" : "") + flat.slice(start, at)));
    var mark = document.createElement("mark");
    mark.textContent = flat.slice(at, at + phrase.length);
    span.appendChild(mark);
    span.appendChild(document.createTextNode(flat.slice(at + phrase.length, end) + (end < flat.length ? "…" : "")));
    return span;
  }

  function show(raw) {
    var list = document.getElementById("search-results");
    var status = document.getElementById("search-status");
    if (!list) return;
    list.textContent = "";
    var r = search(raw);
    if (!norm(raw)) { status.textContent = ""; return; }
    status.textContent = r.results.length
      ? r.results.length + " section" + (r.results.length === 1 ? "" : "s") + " for \u201c" + r.phrase + "\u201d"
      : "Nothing found. Try a shorter part of the message, or the error index.";
    r.results.slice(0, 50).forEach(function (hit) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.className = "result-title";
      a.href = hit.sec.s.u;
      a.textContent = hit.sec.s.t;
      li.appendChild(a);
      if (hit.raises) {
        var badge = document.createElement("span");
        badge.className = "raises";
        badge.textContent = "raises it";
        li.appendChild(badge);
      }
      var where = document.createElement("p");
      where.className = "result-page";
      where.textContent = hit.sec.s.p;
      li.appendChild(where);
      var snip = document.createElement("p");
      snip.className = "result-snippet";
      snip.appendChild(snippet(hit.sec, r.phrase, hit.raises));
      li.appendChild(snip);
      list.appendChild(li);
    });
  }

  window.workbookSearch = search;
  var input = document.getElementById("search-input");
  if (!input) return;
  var q = new URLSearchParams(window.location.search).get("q") || "";
  input.value = q;
  var header = document.getElementById("site-search-input");
  if (header) header.value = q;
  show(q);
  var timer = null;
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      show(input.value);
      var url = new URL(window.location.href);
      url.searchParams.set("q", input.value);
      window.history.replaceState(null, "", url);
    }, 150);
  });
})();
