/* SPDX-License-Identifier: MIT */
/*
 * The sleep hand-shake of sync/sync.c, with the store buffer that makes it hard (x86-TSO:
 * a load may pass the same CPU's earlier store to another location).
 *
 * Waker (producer), for k = 1, 2:
 *   pos = k (into its store buffer); F1 (compiler barrier only);
 *   w = waiters word; if HOT or HOT_PENDING: F2 (fence: drain) and reload;
 *   if count > 0 and seq still equals the seq the last registrant read: R3 seq++ (a locked
 *   RMW: drains the buffer first); FUTEX_WAKE.
 * Waiter (consumer), for k = 1, 2 (wait until pos >= k):
 *   s = seq; old = fetch_add(count) recording s (also reads HOT, and sets HOT_PENDING);
 *   if old had HOT: F3 (its own RMW is already a full barrier in TSO)
 *   else: M1 = membarrier (the waker's CPU drains its buffer), then set HOT;
 *   re-check pos; FUTEX_WAIT(seq, s) (atomic compare-and-sleep); count--.
 *   A wait that did not sleep may clear HOT and HOTP (cooling) while no sleeper is registered,
 *   and so may another handle of the same queue at any time (process cooler).
 * The store buffer drains at any moment on its own; a dead process's buffer drains too.
 * Either side may die at any step. The waiter's slice timeout is only enabled once the waker
 * is dead (liveness), so the model proves that while the waker lives no wake-up relies on the
 * slice: a lost wake-up is a waiter asleep forever, which spin reports as an invalid end state.
 *
 * -DFENCE:  no membarrier anywhere (FENCE bit): wakers always fence (F2), waiters fence (F3).
 * -DBROKEN: no barrier at all: spin must find the lost wake-up (scripts/spin.sh checks that it
 *           does, so the model is known to be able to fail).
 * -DOLDCOOL: cooling that ignores registered sleepers: spin must find the lost wake-up too.
 */

byte pos = 0;	   /* published position (memory) */
byte buf = 0;	   /* waker's pending store of pos (0 = none) */
byte count = 0;	   /* registered sleepers (waiters word, bits 0..28) */
bit hot = 0;	   /* waiters word, HOT bit (set after M1 completed) */
bit hotp = 0;	   /* waiters word, HOT_PENDING bit (set by the registration before M1) */
byte seq = 0;
byte sseq = 0;	   /* waiters word: the seq the last registrant read */
bit asleep = 0;	   /* waiter is inside FUTEX_WAIT */
bit waker_dead = 0;
bit waiter_done = 0;
byte published = 0; /* highest position the waker stored (reaches memory eventually) */
byte got = 0;	   /* highest position the waiter saw */
bit epipe = 0;

inline drain() {
	atomic { if :: buf -> pos = buf; buf = 0 :: else -> skip fi }
}

/* cool() in sync/sync.c: HOT and HOTP go only while no sleeper is registered (CAS on the
 * waiters word). -DOLDCOOL: the unconditional clear of the first version, which spin shows
 * losing a wake-up once another handle cools during a registration. */
inline cool() {
#ifdef OLDCOOL
	atomic { hot = 0; hotp = 0 }
#else
	atomic { if :: count == 0 -> hot = 0; hotp = 0 :: else -> skip fi }
#endif
}

/* Another handle of the same queue (MPMC consumers, MPSC producers) whose waits do not sleep:
 * it cools at any moment, twice (bounded, so that a stuck waiter is an end state spin sees). */
active proctype cooler()
{
	byte n = 0;
	do
	:: n < 2 -> cool(); n++
	:: n >= 2 -> break
	od
}

active proctype storebuffer()
{
	do
	:: buf -> drain()
	:: waiter_done -> break
	od
}

active proctype waker()
{
	byte k = 1, c, sl;
	bit h;
	do
	:: k <= 2 ->
		if :: true :: true -> goto die fi;
		atomic { buf = k; published = k };
		if :: true :: true -> goto die fi;
#if defined(FENCE)
		drain(); /* F2 always */
#endif
		atomic { c = count; h = hot || hotp; sl = sseq }; /* may pass the buffered store */
#if !defined(BROKEN) && !defined(FENCE)
		if
		:: h -> drain(); atomic { c = count; h = hot || hotp; sl = sseq } /* F2, reload */
		:: else -> skip
		fi;
#endif
		if :: true :: true -> goto die fi;
		if
		:: c > 0 && seq != sl -> skip /* seq moved since the registrant read it */
		:: c > 0 && seq == sl ->
			atomic { drain(); seq++ }; /* R3 */
			if :: true :: true -> goto die fi;
			atomic { if :: asleep -> asleep = 0 :: else -> skip fi } /* FUTEX_WAKE */
		:: c == 0 -> skip
		fi;
		k++
	:: k > 2 -> break
	od;
	goto out;
die:
	waker_dead = 1; /* the kernel drops its claim; its store buffer still drains */
out:
	skip
}

active proctype waiter()
{
	byte k = 1, s;
	bit oldhot, slept;
	do
	:: k > 2 -> break
	:: k <= 2 ->
		slept = 0;
		do
		:: pos >= k -> got = pos; break
		:: pos < k && waker_dead ->
			drain(); /* its stores reach memory */
			if :: pos >= k -> got = pos :: else -> epipe = 1 fi;
			break
		:: pos < k && !waker_dead ->
			s = seq; /* A3, before registering */
			atomic { oldhot = hot; count++; sseq = s;
#if !defined(BROKEN) && !defined(FENCE)
				if :: !oldhot -> hotp = 1 :: else -> skip fi
#endif
			};
			if :: true :: true -> goto dead fi; /* dies registered: harmless */
#if defined(BROKEN)
			skip;
#elif defined(FENCE)
			skip; /* F3: the RMW above is a full barrier; wakers always fence */
#else
			if
			:: oldhot -> skip /* F3 */
			:: else -> drain(); hot = 1 /* M1, then HOT */
			fi;
#endif
			if
			:: pos >= k -> count--; got = pos; break
			:: else -> skip
			fi;
			atomic { if :: seq == s -> asleep = 1 :: else -> skip fi }; /* FUTEX_WAIT */
			slept = 1;
			if
			:: !asleep -> skip /* woken, or seq had moved */
			:: waker_dead && asleep -> asleep = 0 /* slice timeout: only for a dead peer */
			fi;
			count--;
			if :: true :: true -> goto dead fi
		od;
		if :: epipe -> break :: else -> skip fi;
		/* cooling: a wait that did not sleep may clear HOT, while no one is registered */
		if :: !slept -> cool() :: true -> skip fi;
		k++
	od;
	/* pipe semantics: what the waker published is never missed, even if it then died; EOF
	 * only when it is dead and nothing more was published */
	assert(epipe || got >= 2);
	assert(!epipe || (waker_dead && got < k && published < k));
dead:
	waiter_done = 1
}
