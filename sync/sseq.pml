/* SPDX-License-Identifier: MIT */
/*
 * The wake skip of sync/sync.c with two sleepers on one queue (MPMC, or MPSC producers waiting
 * for space). handshake.pml checks the barriers with one sleeper; this model assumes
 * sequentially consistent memory and checks the skip alone.
 *
 * The skip: a registrant records in the waiters word (SSEQ) the seq it read before
 * registering; a waker bumps seq and wakes only if seq still equals SSEQ, since otherwise "seq
 * moved since the last registrant read it, so every sleeper is awake". That holds only if SSEQ
 * is never older than the seq some sleeper sleeps on.
 *
 * Registration is a CAS loop on the waiters word (modelled with a version number). The first
 * version read seq once, before the loop: a registrant that read seq, was preempted, and then
 * CASed after a newer registrant wrote a stale SSEQ over the newer one. Found in review, and
 * -DSTALE keeps that version: spin must find the lost wake-up (a sleeper asleep for ever with
 * the data there). The fix reads seq in every attempt, between its load of the word and its
 * CAS: a CAS that lands on a newer registration has read at least that registrant's seq.
 *
 * -DSEM: the semaphore back-end, whose sleepers take a token and compare no seq. A stale
 * registrant there sleeps on, so the skip is off on that back-end (found in review); with
 * -DSEMSKIP (the skip kept) spin must find the lost wake-up.
 *
 * Sleeper A waits for positions 1 and 2, sleeper B for position 1 only (so after its stale
 * registration it leaves without registering again), and the waker publishes 1, then 2.
 */

byte pos = 0;
byte seq = 0;
byte count = 0;	  /* waiters word: registered sleepers */
byte sseq = 0;	  /* waiters word: the seq the last registrant read */
byte version = 0; /* waiters word: changes with every write (what a CAS compares) */
bit asleep[2];
byte sem = 0; /* -DSEM: tokens of the POSIX semaphore back-end */

active proctype waker()
{
	byte k = 1;
	do
	:: k <= 2 ->
		pos = k;
#if defined(SEM) && !defined(SEMSKIP)
		if
		:: count > 0 -> seq++; if :: sem < count -> sem = count :: else -> skip fi /* wake_q(): tokens up to the sleepers counted, no skip */
		:: else -> skip
		fi;
#elif defined(SEM)
		if
		:: count > 0 && seq == sseq -> seq++; if :: sem < count -> sem = count :: else -> skip fi
		:: else -> skip
		fi;
#else
		if
		:: count > 0 && seq == sseq ->
			seq++; /* R3 */
			asleep[0] = 0; asleep[1] = 0 /* FUTEX_WAKE: all */
		:: else -> skip /* nobody, or seq moved since the last registrant read it */
		fi;
#endif
		k++
	:: k > 2 -> break
	od
}

proctype sleeper(bit me; byte last)
{
	byte k = 1, s, v;
	do
	:: k > last -> break
	:: k <= last ->
		do
		:: pos >= k -> break
		:: pos < k ->
#if defined(STALE)
			s = seq; /* A3, once, before the loop */
#endif
			do
			:: v = version;
#if !defined(STALE)
				s = seq; /* A3, in every attempt, after the load of the word */
#endif
				atomic {
					if
					:: version == v -> count++; sseq = s; version++; break
					:: else -> skip /* the word changed: the CAS fails, retry */
					fi
				}
			od;
			if
			:: pos >= k -> atomic { count--; version++ }; break
			:: else -> skip
			fi;
#ifdef SEM
			atomic { sem > 0 -> sem-- }; /* sem_clockwait: any token, seq not compared */
#else
			atomic { if :: seq == s -> asleep[me] = 1 :: else -> skip fi }; /* FUTEX_WAIT */
			(!asleep[me]); /* a lost wake-up leaves this blocked: an invalid end state */
#endif
			atomic { count--; version++ }
		od;
		k++
	od
}

init
{
	run sleeper(0, 2);
	run sleeper(1, 1)
}
