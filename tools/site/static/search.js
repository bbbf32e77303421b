// Search for the workbook's site: one entry per section (window.WORKBOOK_SEARCH_INDEX, written by
// tools/site/build.py), matched as phrases, not as loose words, so that a pasted message with its
// quotes, brackets and dots is found as it is.
//
// The phrase: each variant of the query (each of its lines from the last, also without a
// leading "SomethingError: ", then the whole query) is cut back to its longest start that some
// section contains, ending at a word or a punctuation mark (your own key names are cut off,
// `"module.` stays); the first that a raised error contains wins, else the most specific.
// Ranking for that phrase:
//   1. sections whose heading names it and that raise it (a cell's error message contains it);
//   2. sections whose heading names it;
//   3. the other sections that raise it ("raises it"), in learning-path order;
//   4. the other sections whose prose, code or printed output contains it;
//   and when no section contains the query as a phrase, the sections with every word of it.
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

  function found(phrase, errorsOnly) {
    for (var i = 0; i < SECTIONS.length; i++) {
      if (SECTIONS[i].e.indexOf(phrase) >= 0) return true;
      if (!errorsOnly && SECTIONS[i].x.indexOf(phrase) >= 0) return true;
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
  function longestPrefix(q, errorsOnly) {
    if (!q) return "";
    if (found(q, errorsOnly)) return q;
    var lo = 0, hi = q.length;
    while (hi - lo > 1) {
      var mid = (lo + hi) >> 1;
      if (found(q.slice(0, mid), errorsOnly)) lo = mid; else hi = mid;
    }
    var p = q.slice(0, lo);
    for (var i = p.length; i > 0; i--) {
      var c = p.charAt(i - 1);
      if (c === " ") return p.slice(0, i - 1).trim();
      if (".:\"'()[],/=".indexOf(c) >= 0) return p.slice(0, i).trim();
    }
    return "";
  }

  // What to look for, in order: the last line of a pasted traceback first (then the line above
  // it, ...), each also without a leading "SomethingError: ", then the whole query. Traceback
  // furniture (the header, "File ..." lines, arrows and carets) is left out.
  var FURNITURE = /^(traceback \(most recent call last\)|file "|-+>|\^+$|~+$|during handling of)/;

  // A search box drops the newlines of a pasted traceback, so its lines are found again where
  // they start: a tab, "File \"", "SomethingError: ", and load_state_dict's detail lines.
  var BREAKS = new RegExp(
    "\\n|\\t|(?=traceback \\(most recent call last\\))|(?=file \")" +
      "|(?=\\b[\\w.]*(?:error|exception|warning)\\w*: )" +
      "|(?=(?:missing|unexpected) key\\(s\\) in state_dict)|(?=size mismatch for )",
    "i"
  );

  function variants(raw) {
    var out = [];
    var lines = String(raw).split(BREAKS).map(norm).filter(function (l) {
      return l && !FURNITURE.test(l);
    });
    for (var i = lines.length - 1; i >= 0; i--) {
      out.push(lines[i]);
      var m = lines[i].match(/^[\w.]*(?:error|exception|warning)\w*:\s*(.+)$/);
      if (m) out.push(m[1]);
    }
    out.push(norm(raw));
    return out.filter(function (v, i) { return v && out.indexOf(v) === i; });
  }

  function countErrors(phrase) {
    var n = 0;
    for (var i = 0; i < SECTIONS.length; i++) if (SECTIONS[i].e.indexOf(phrase) >= 0) n++;
    return n;
  }

  function named(sec, full, phrase) {
    if (sec.h.indexOf(phrase) >= 0) return true;
    for (var i = 0; i < sec.n.length; i++) if (full.indexOf(sec.n[i]) >= 0) return true;
    return false;
  }

  // Sections that name the phrase in their heading first (those that raise it before those
  // that explain it), then the others that raise it, then the others that contain it; each group
  // in learning-path order.
  function rankPhrase(best, full) {
    var hits = [];
    SECTIONS.forEach(function (sec) {
      var raises = sec.e.indexOf(best) >= 0;
      if (raises || sec.x.indexOf(best) >= 0 || sec.h.indexOf(best) >= 0) {
        var group = named(sec, full, best) ? (raises ? 0 : 1) : (raises ? 2 : 3);
        hits.push({ sec: sec, raises: raises, group: group });
      }
    });
    hits.sort(function (a, b) { return a.group - b.group || a.sec.s.o - b.sec.s.o; });
    return hits;
  }

  function search(raw) {
    var full = norm(raw);
    if (!full) return { phrase: "", results: [] };
    // The first variant whose start (12 characters at least) a raised error shows; failing that, the whole query as a phrase; failing that, every word of it
    // (further down); failing that, the variant found in the fewest sections.
    var best = "", bestCount = 0;
    var all = variants(raw);
    for (var i = 0; i < all.length && !best; i++) {
      var p = longestPrefix(all[i], true);
      if (p.length >= 12) best = p;
    }
    if (!best && found(full, false)) best = full;
    var results = [];
    if (best) results = rankPhrase(best, full);
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
        if (results.length) best = words[0];
      }
    }
    if (!results.length) {
      best = "";
      all.forEach(function (v) {
        var p = longestPrefix(v, false);
        if (!p || p.length < Math.min(v.length, 8)) return;
        var n = count(p);
        if (!best || n < bestCount || (n === bestCount && p.length > best.length)) {
          best = p;
          bestCount = n;
        }
      });
      if (best) results = rankPhrase(best, full);
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
