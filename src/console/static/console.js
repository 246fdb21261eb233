// The one script of the console: tell the server the viewer's time zone (times are drawn on
// the server), once per zone change. No other script runs here (see the CSP).
(function () {
  var z = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!z || document.cookie.indexOf("aftercare_tz=" + encodeURIComponent(z)) >= 0) return;
  document.cookie = "aftercare_tz=" + encodeURIComponent(z) + "; path=/console; SameSite=Strict";
  if (!sessionStorage.getItem("aftercare_tz_sent")) { sessionStorage.setItem("aftercare_tz_sent", "1"); location.reload(); }
})();
