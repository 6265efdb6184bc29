// Progressive enhancement only: without JavaScript the page works the same
// but shows times in UTC until the viewer picks a time zone.
(function () {
  "use strict";

  // Tell the server the browser's time zone once, so that times show in
  // local time. The preferences page sets it for viewers without JavaScript.
  var hasZone = function () { return /(?:^|;\s*)auditctl_tz=/.test(document.cookie); };
  if (!hasZone() && window.Intl) {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && /^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) {
      var secure = location.protocol === "https:" ? "; secure" : "";
      document.cookie = "auditctl_tz=" + zone + "; path=/; max-age=31536000; samesite=lax" + secure;
      // Reload only when the cookie stuck, so that a browser refusing cookies does not loop.
      if (hasZone() && zone !== "UTC") {
        location.replace(location.href);
      }
    }
  }
})();
