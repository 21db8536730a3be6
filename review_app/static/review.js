// hallo3-gate review pages: the run page's video, per-frame timelines and keys. No inline script (CSP script-src 'self').
// - the timeline cursor follows playback (requestVideoFrameCallback where the browser has it, else timeupdate);
// - a click on a timeline seeks to that frame;
// - ←/→ step one frame (seek to (n + 0.5) / fps, inside frame n), space plays/pauses;
// - the comment form's hidden "frame" holds the frame on screen (sent when "pin to current frame" is ticked);
// - a "frame N" link of a comment in the ledger history seeks the video to frame N.
(function () {
  "use strict";

  function setup() {
    var video = document.getElementById("video");
    var section = document.getElementById("timelines");
    if (!video || !section) return;
    var fps = parseFloat(video.dataset.fps) || 25;
    var label = document.getElementById("frame-label");
    var cursors = section.querySelectorAll("svg.tl .cursor");
    var svgs = section.querySelectorAll("svg.tl");
    var pinField = document.getElementById("comment-frame");
    var pinLabel = document.getElementById("comment-frame-label");
    var commentForm = document.getElementById("comment-form");

    function totalFrames() {
      var n = parseInt(video.dataset.frames, 10);
      if (n > 0) return n;
      return isFinite(video.duration) && video.duration > 0 ? Math.round(video.duration * fps) : 1;
    }

    function frameAt(time) {
      return Math.max(0, Math.min(totalFrames() - 1, Math.floor(time * fps + 1e-6)));
    }

    function draw(time) {
      var frames = totalFrames();
      var x = ((Math.min(time * fps, frames) / frames) * 1000).toFixed(2);
      for (var i = 0; i < cursors.length; i++) {
        cursors[i].setAttribute("x1", x);
        cursors[i].setAttribute("x2", x);
      }
      if (label) label.textContent = "frame " + frameAt(time) + " / " + frames + " · " + time.toFixed(2) + " s";
      if (pinField) pinField.value = String(frameAt(time));
      if (pinLabel) pinLabel.textContent = "(frame " + frameAt(time) + ")";
    }

    function seekFrame(n) {
      var last = totalFrames() - 1;
      n = Math.max(0, Math.min(last, n));
      video.currentTime = (n + 0.5) / fps;
      draw(video.currentTime);
    }

    if (typeof video.requestVideoFrameCallback === "function") {
      var onFrame = function (now, meta) {
        draw(meta.mediaTime);
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    }
    video.addEventListener("timeupdate", function () { draw(video.currentTime); });
    video.addEventListener("seeked", function () { draw(video.currentTime); });
    video.addEventListener("loadedmetadata", function () { draw(video.currentTime); });

    for (var i = 0; i < svgs.length; i++) {
      svgs[i].addEventListener("click", function (event) {
        var box = event.currentTarget.getBoundingClientRect();
        var frac = (event.clientX - box.left) / box.width;
        seekFrame(Math.floor(frac * totalFrames()));
      });
    }

    if (commentForm && pinField) {
      commentForm.addEventListener("submit", function () { pinField.value = String(frameAt(video.currentTime)); });
    }

    var seekLinks = document.querySelectorAll("a.seek[data-frame]");
    for (var j = 0; j < seekLinks.length; j++) {
      seekLinks[j].addEventListener("click", function (event) {
        var n = parseInt(event.currentTarget.dataset.frame, 10);
        if (isNaN(n)) return;
        event.preventDefault();
        video.pause();
        seekFrame(n);
        video.scrollIntoView({ block: "nearest" });
      });
    }

    document.addEventListener("keydown", function (event) {
      var tag = (event.target && event.target.tagName) || "";
      if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || event.altKey || event.ctrlKey || event.metaKey) {
        return;
      }
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        event.preventDefault();
        video.pause();
        seekFrame(frameAt(video.currentTime) + (event.key === "ArrowRight" ? 1 : -1));
      } else if (event.key === " " && tag !== "BUTTON") {
        event.preventDefault();
        if (video.paused) video.play(); else video.pause();
      }
    });
    draw(0);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
