"""How often do C independent senders collide in MTurk's bucket at rate R?

Why it matters: the rate goals ask for 1.2 x the floor (at least 0.83 x R
accepted) with under 5 % of calls throttled, for R = 2 and C = 5, with
instances that adapt independently. This computes the throttled share that
*any* independent pacing would pay at a given total rate, before any rate
control: C evenly spaced senders at total rate S (each at S / C, their rates
spread by +-SPREAD, their phases random), against the double's account
limit, a token bucket of rate R holding max(R, 1) tokens (mturk-double's
`TokenBucket`, which src/rate/sim.rs uses too). Poisson arrivals at S are shown beside it.

With JITTER=1 a throttled sender also moves its phase by a random part of an
interval (what a limiter could do on a throttle), so colliding senders
scatter; that helps only while their rates stay nearly equal.

Pure arithmetic: no network, no processes, a few seconds.

Usage:
  python3 scripts/rate-collisions.py [R=2] [C=5] [SPREAD=0.03] [JITTER=0]
"""
import heapq
import random
import sys


def arg(i, default, kind):
    return kind(sys.argv[i]) if len(sys.argv) > i else default


def throttled_share(total, senders, r, spread, jitter, seconds=20000, seed=1):
    rnd = random.Random(seed)
    capacity = max(r, 1.0)
    rates = [total / senders * (1 + rnd.uniform(-spread, spread)) for _ in range(senders)]
    due = [(rnd.uniform(0, 1 / rate), i) for i, rate in enumerate(rates)]
    heapq.heapify(due)
    tokens, last, calls, throttled = capacity, 0.0, 0, 0
    while due:
        t, i = heapq.heappop(due)
        if t > seconds:
            break
        tokens = min(capacity, tokens + (t - last) * r)
        last = t
        calls += 1
        nxt = t + 1 / rates[i]
        if tokens >= 1:
            tokens -= 1
        else:
            throttled += 1
            if jitter:
                nxt += rnd.uniform(0, 1 / rates[i])
        heapq.heappush(due, (nxt, i))
    return throttled / calls


def poisson_share(total, r, seconds=20000, seed=1):
    rnd = random.Random(seed)
    capacity = max(r, 1.0)
    tokens, last, t, calls, throttled = capacity, 0.0, 0.0, 0, 0
    while True:
        t += rnd.expovariate(total)
        if t > seconds:
            return throttled / calls
        tokens = min(capacity, tokens + (t - last) * r)
        last = t
        calls += 1
        if tokens >= 1:
            tokens -= 1
        else:
            throttled += 1


def main():
    r = arg(1, 2.0, float)
    c = arg(2, 5, int)
    spread = arg(3, 0.03, float)
    jitter = arg(4, 0, int)
    print(f"R = {r}, {c} senders, rates spread +-{spread:.0%}, jitter on throttle: {'yes' if jitter else 'no'}")
    print("| total rate / R | throttled, evenly spaced senders | throttled, Poisson arrivals |")
    print("|---|---|---|")
    for frac in (0.5, 0.6, 0.7, 0.8, 0.83, 0.9, 1.0):
        s = frac * r
        print(f"| {frac:.2f} | {throttled_share(s, c, r, spread, jitter):.1%} | {poisson_share(s, r):.1%} |")


if __name__ == "__main__":
    main()
