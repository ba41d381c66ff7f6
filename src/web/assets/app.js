// cronmgr web: the little script the pages use. Everything works without it; it adds the
// schedule preview in the editor, live output (Server-Sent Events), and the system picker.
"use strict";
(function () {
  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });

  var out = document.getElementById("output");
  if (out && out.dataset.stream && window.EventSource) {
    var es = new EventSource(out.dataset.stream);
    var first = true;
    es.onmessage = function (e) {
      if (first) { out.textContent = ""; first = false; }
      var atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      out.textContent += e.data + "\n";
      if (atEnd) { out.scrollTop = out.scrollHeight; }
    };
    es.addEventListener("end", function (e) {
      es.close();
      var badge = document.getElementById("live-state");
      if (badge) { badge.textContent = e.data; badge.className = "badge " + e.data; }
    });
  }

  var sched = document.getElementById("f-schedule");
  if (sched && sched.dataset.describe) {
    var help = document.getElementById("schedule-help");
    var list = document.getElementById("schedule-next");
    var zone = document.getElementById("f-timezone");
    var timer = null;
    var update = function () {
      var url = sched.dataset.describe + "?schedule=" + encodeURIComponent(sched.value) +
        "&timezone=" + encodeURIComponent(zone ? zone.value : "");
      fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (d) {
        list.textContent = "";
        if (d.valid) {
          help.textContent = d.description + " (" + d.timezone + ")";
          help.className = "hint";
          d.next.forEach(function (n) {
            var li = document.createElement("li");
            li.textContent = n.at + (n.dst_note ? " — DST: " + n.dst_note : "");
            list.appendChild(li);
          });
        } else {
          help.textContent = d.error;
          help.className = "error";
        }
      }).catch(function () {});
    };
    var later = function () { clearTimeout(timer); timer = setTimeout(update, 250); };
    sched.addEventListener("input", later);
    if (zone) { zone.addEventListener("input", later); }
    update();
  }
})();
