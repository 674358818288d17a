/*
 * guard.js — mturk-exclusion's accept-time check for a HIT page.
 *
 * Right after a worker accepts, asks the lab's check endpoint whether this
 * worker may take this HIT, and if not, asks them kindly to return it.
 * Plain ES2017, no dependencies, no build step: include it with a <script> tag.
 *
 * Automatic mode (data attributes on the script tag):
 *   <script src="guard.js" data-endpoint="https://…/" data-task="#task"
 *           data-message="#guard-message" data-timeout-ms="4000"></script>
 *   data-endpoint  the check URL (required; the CLI fills {{CHECK_URL}})
 *   data-task      selector of the element to hide from a worker who is not
 *                  eligible (default "#task")
 *   data-message   selector of the element that receives the message
 *                  (optional; created just before the task when absent)
 *   data-timeout-ms  how long to wait for the answer (default 4000)
 *   Without data-endpoint the script only defines the API below.
 *
 * API (jsPsych and custom pages decide for themselves):
 *   MturkExclusionGuard.check({endpoint, timeoutMs}) → Promise<{eligible,
 *     reason, checked}>; never rejects. checked is false in preview and
 *     whenever the check failed open (then reason is "unavailable").
 *     The ids come from location.search, or from options workerId,
 *     assignmentId and hitId when the page's URL has none (oTree).
 *   MturkExclusionGuard.message(reason) → {title, paragraphs} (plain text)
 *   MturkExclusionGuard.showMessage(reason, {task, message}) hides the task
 *     and shows the message; task/message are elements or selectors.
 *   MturkExclusionGuard.auto → the automatic mode's Promise of the result
 *     (null when not in automatic mode). The same result is also sent as a
 *     "mturk-exclusion-guard" event on document (event.detail).
 *
 * Why it fails open: this check only spares a repeat worker the effort of
 * doing a task whose data the lab cannot use. The real exclusion happens at
 * submission: every submitted assignment is recorded and its worker gets the
 * lab's qualification, whatever this page did. So if the endpoint is slow,
 * down, or answers something unexpected, the worker simply sees the task.
 *
 * Privacy: worker ids link to public Amazon profiles. This script sends the
 * id to the lab's own endpoint only, and never writes it to the console.
 */
(function () {
  'use strict';

  var PREVIEW_ASSIGNMENT = 'ASSIGNMENT_ID_NOT_AVAILABLE';
  var DEFAULT_TIMEOUT_MS = 4000;
  var EVENT_NAME = 'mturk-exclusion-guard';
  var LOG_PREFIX = 'mturk-exclusion guard: ';

  // Must be read now: document.currentScript is null once this script's
  // top-level code has run (in callbacks, after awaits).
  var thisScript = document.currentScript;

  // The ids MTurk appends to the page's URL (worker id only once accepted).
  function params(search) {
    var q = new URLSearchParams(search === undefined ? location.search : search);
    var assignmentId = q.get('assignmentId') || '';
    return {
      workerId: q.get('workerId') || '',
      assignmentId: assignmentId,
      hitId: q.get('hitId') || '',
      // No assignment at all (page opened outside MTurk) counts as preview:
      // there is nobody to check yet.
      preview: assignmentId === '' || assignmentId === PREVIEW_ASSIGNMENT,
    };
  }

  function failOpen(why) {
    // Never include ids here: the console can end up in screenshots and bug
    // reports.
    console.info(LOG_PREFIX + 'no answer (' + why + '); showing the task');
    return { eligible: true, reason: 'unavailable', checked: false };
  }

  async function check(options) {
    options = options || {};
    var ids = params(options.search);
    // Pages whose own URL has no MTurk ids (oTree, a survey tool) pass them.
    if (options.workerId || options.assignmentId || options.hitId) {
      ids = params(
        '?' + new URLSearchParams({
          workerId: options.workerId || '',
          assignmentId: options.assignmentId || '',
          hitId: options.hitId || '',
        })
      );
    }
    if (ids.preview) {
      // Preview: no request at all. The worker has not accepted, and a
      // previewing worker is not yet anyone's business.
      return { eligible: true, reason: 'preview', checked: false };
    }
    if (!ids.workerId || !ids.hitId) return failOpen('page has no workerId or hitId');
    var endpoint = options.endpoint;
    if (!endpoint || endpoint.indexOf('{{') !== -1) {
      return failOpen('no check URL configured');
    }
    var timeoutMs = Number(options.timeoutMs) > 0 ? Number(options.timeoutMs) : DEFAULT_TIMEOUT_MS;

    var url;
    try {
      url = new URL(endpoint, location.href);
    } catch (e) {
      return failOpen('check URL is not a URL');
    }
    url.searchParams.set('workerId', ids.workerId);
    url.searchParams.set('assignmentId', ids.assignmentId);
    url.searchParams.set('hitId', ids.hitId);

    // The abort cancels the request; the race also bounds the wait in a
    // browser without AbortController.
    var controller = typeof AbortController === 'function' ? new AbortController() : null;
    var timer;
    var timedOut = new Promise(function (resolve) {
      timer = setTimeout(function () {
        if (controller) controller.abort();
        resolve('timeout');
      }, timeoutMs);
    });
    try {
      // A plain GET without custom headers is a "simple" CORS request: no
      // preflight, one round trip. No cookies (the endpoint allows none) and
      // no Referer (the page's URL holds the worker id; the endpoint gets the
      // ids it needs from the query string).
      var answer = (async function () {
        var res = await fetch(url.href, {
          method: 'GET',
          mode: 'cors',
          credentials: 'omit',
          cache: 'no-store',
          referrerPolicy: 'no-referrer',
          signal: controller ? controller.signal : undefined,
        });
        if (res.status !== 200) return 'HTTP ' + res.status;
        // Reading the body is inside the timeout too.
        var body;
        try {
          body = await res.json();
        } catch (e) {
          return 'answer is not JSON';
        }
        if (!body || typeof body.eligible !== 'boolean') return 'answer has no eligible flag';
        return {
          eligible: body.eligible,
          reason: typeof body.reason === 'string' ? body.reason : '',
          checked: true,
        };
      })();
      var outcome = await Promise.race([answer, timedOut]);
      return typeof outcome === 'string' ? failOpen(outcome) : outcome;
    } catch (e) {
      // Network error, CORS refusal, DNS, abort: all look alike from here.
      return failOpen(e && e.name === 'AbortError' ? 'timeout' : 'unreachable, or refused by CORS');
    } finally {
      clearTimeout(timer);
    }
  }

  var RETURN_IS_FREE =
    'Returning a HIT costs you nothing: it does not affect your approval rating, ' +
    'and nobody will be rejected. Thank you for your understanding.';

  // Plain text only: pages can put it anywhere (jsPsych trial, alert box, …).
  function message(reason) {
    if (reason === 'took_part') {
      return {
        title: 'Thank you for your interest!',
        paragraphs: [
          'Our records show that you have already taken part in one of our studies. ' +
            'Our studies only work with people who have not taken part before, ' +
            'so we cannot include you in this one.',
          'Please return this HIT using the "Return" button on the MTurk page. ' + RETURN_IS_FREE,
        ],
      };
    }
    if (reason === 'busy') {
      return {
        title: 'You already have one of our HITs open',
        paragraphs: [
          'Our records show that you currently have another of our HITs open. ' +
            'Please finish or return that one first, and return this HIT for now ' +
            'using the "Return" button on the MTurk page.',
          RETURN_IS_FREE,
          'If you have just returned the other HIT, you may reload this page in a few minutes.',
        ],
      };
    }
    return {
      title: 'This HIT is not available to you',
      paragraphs: ['Please return this HIT using the "Return" button on the MTurk page. ' + RETURN_IS_FREE],
    };
  }

  function element(x) {
    return typeof x === 'string' ? document.querySelector(x) : x || null;
  }

  // Readable without any CSS framework; a lab's own stylesheet can override
  // the class (low specificity on purpose).
  function addStyleOnce() {
    if (document.getElementById('mturk-exclusion-guard-style')) return;
    var style = document.createElement('style');
    style.id = 'mturk-exclusion-guard-style';
    style.textContent =
      '.mturk-exclusion-guard-message{max-width:40em;margin:2em auto;padding:1.25em 1.5em;' +
      'border:2px solid #2b6cb0;border-radius:8px;background:#f3f8fd;color:#1a202c;' +
      'font:1.05rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}' +
      '.mturk-exclusion-guard-message h2{margin:0 0 .6em;font-size:1.3rem}' +
      '.mturk-exclusion-guard-message p{margin:.6em 0}' +
      // Focused by script so screen readers and keyboards land on it; the
      // border already marks it, no focus ring needed.
      '.mturk-exclusion-guard-message:focus{outline:none}';
    (document.head || document.documentElement).appendChild(style);
  }

  function showMessage(reason, where) {
    where = where || {};
    var task = element(where.task);
    var box = element(where.message);
    if (task) task.hidden = true;
    if (!box) {
      box = document.createElement('div');
      if (task && task.parentNode) task.parentNode.insertBefore(box, task);
      else document.body.appendChild(box);
    }
    var text = message(reason);
    addStyleOnce();
    box.classList.add('mturk-exclusion-guard-message');
    // role="alert" makes screen readers announce it; focus brings it into
    // view and keyboard reach.
    box.setAttribute('role', 'alert');
    box.setAttribute('tabindex', '-1');
    box.textContent = '';
    var h = document.createElement('h2');
    h.textContent = text.title;
    box.appendChild(h);
    text.paragraphs.forEach(function (p) {
      var el = document.createElement('p');
      el.textContent = p;
      box.appendChild(el);
    });
    box.hidden = false;
    box.dataset.reason = reason || '';
    try {
      box.focus({ preventScroll: false });
    } catch (e) {
      /* focus is a courtesy */
    }
    return box;
  }

  async function auto(script) {
    var options = {
      endpoint: script.getAttribute('data-endpoint'),
      timeoutMs: script.getAttribute('data-timeout-ms'),
    };
    var where = {
      task: script.getAttribute('data-task') || '#task',
      message: script.getAttribute('data-message'),
    };
    if (document.readyState === 'loading') {
      await new Promise(function (resolve) {
        document.addEventListener('DOMContentLoaded', resolve, { once: true });
      });
    }
    var task = element(where.task);
    var ids = params();
    // Hide the task while asking, so a repeat worker does not start on it;
    // a safety timer shows it again whatever happens (fail open even if
    // something below throws).
    var safety = null;
    if (task && !ids.preview) {
      task.hidden = true;
      task.setAttribute('aria-busy', 'true');
      var limit = (Number(options.timeoutMs) > 0 ? Number(options.timeoutMs) : DEFAULT_TIMEOUT_MS) + 1000;
      safety = setTimeout(function () {
        task.hidden = false;
      }, limit);
    }
    var result;
    try {
      result = await check(options);
    } catch (e) {
      result = failOpen('unexpected error');
    }
    if (safety !== null) clearTimeout(safety);
    if (task) task.removeAttribute('aria-busy');
    if (result.eligible) {
      if (task) task.hidden = false;
    } else {
      showMessage(result.reason, where);
    }
    // For the page's own CSS and for tests: preview, unavailable, new, …
    document.documentElement.setAttribute('data-mturk-exclusion', result.reason);
    document.dispatchEvent(new CustomEvent(EVENT_NAME, { detail: result }));
    return result;
  }

  var api = {
    check: check,
    params: params,
    message: message,
    showMessage: showMessage,
    auto: null,
  };
  window.MturkExclusionGuard = api;

  if (thisScript && thisScript.hasAttribute('data-endpoint')) {
    api.auto = auto(thisScript);
  }
})();
