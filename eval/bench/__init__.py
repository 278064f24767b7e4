"""Speed benchmark: prefill time, time per generated token, throughput and peak memory of every decoding method.

Every method decodes the same fixed synthetic images with the same prompt for exactly ``--new-tokens`` tokens (EOS is
ignored), at each batch size, through our decoding loop (``llava.generation.generate``) and the hook point of
``llava.attention``. The ratio of each method's time per generated token to plain decoding (``baseline``) at the same
batch size is measured in the same run, with the methods interleaved inside each repeat so that background load
spreads evenly over them.

Models (``--model-path``):

- ``tiny`` / ``7b``: a synthetic random model of that shape (``llava.model.synthetic``), family from ``--family``
  (default ``llava``); ``tiny-llava``, ``tiny-llava_next``, ``7b-instructblip``, ... name shape and family at once.
  Random weights decode at the same speed as trained ones with the same shapes; nothing is downloaded.
- anything else: a checkpoint loaded with ``llava.model.builder.load_pretrained_model`` (original LLaVA, ``llava-hf``
  or InstructBLIP; local folder or hub id). Write ``./tiny`` for a local folder that happens to be named ``tiny``.

Timing: each timed repeat is one ``generate`` call of exactly N tokens whose ``step_callback`` reads a synchronised
clock when each token has been chosen. ``prefill_ms`` is the time to the first token (image encoding, prompt
embedding, the prefill forward(s) including a contrastive branch's, cache merge, first choice); ``ms_per_token`` is
``(total - prefill) / (N - 1)`` of that same run, the cost of one decode step (one batched forward over all branches,
the method's logit combination and the token choice), median over the repeats; ``tokens_per_s`` is
``batch_size * 1000 / ms_per_token`` (generated tokens per second while decoding); ``ratio_to_baseline`` is the ratio
of the medians of ``ms_per_token``. ``step_ms_median`` (the median of all single decode steps of all repeats) and
its ratio ``ratio_step_median`` are robust to short bursts of background load. Reading both phases from one run
(rather than subtracting a separate 1-token run from an N-token run) keeps prefill jitter out of the per-token
figure; the loop itself is unchanged (it already reads ``finished`` back from the device once per step, so the
callback's synchronisation adds no new stall on CUDA). Methods are interleaved within each repeat (order rotated).
Before timing, each method runs once for 2 tokens at each batch size (one-time costs of new shapes: up to seconds on
the CPU) and then ``--warmup`` times at full length, untimed.

Memory: on CUDA ``peak_mem_mb`` is ``torch.cuda.max_memory_allocated`` over the N-token run (after a reset; weights
included) and ``peak_delta_mb`` the part above what was allocated before the run; on the CPU it is the growth of the
process' resident set during the run (``VmHWM`` after resetting it via ``/proc/self/clear_refs``, minus ``VmRSS``
before; memory the allocator reuses is not counted, so it is a lower bound).

Decoding is greedy for every method by default, so the ratios isolate each method's own cost; ``--sample`` samples
at temperature 1 with one seeded generator per row (the AvisC/VCD/M3ID paper setting; on the CPU ``torch.multinomial``
over 32000 ids costs about 0.7 ms per row and step, the same for every method). ``--sparc-tau`` is a stress setting:
random weights give near-uniform attention, so SPARC's paper tau selects nothing and its amplification path never
runs; ``0`` selects about a third of the image tokens per step, ``-1`` all of them. The rows of SPARC report
``sparc_selections_per_step``.

On a shared CPU use ``--threads 1 --clock process``: with two OpenMP threads on two busy cores a decode step can stall
for tenths of a second (spin-waiting threads), and the process clock (CPU time of this process) ignores the time other
processes take. ``7b`` on the CPU needs about 30 GB of memory in float32; it is meant for ``--device cuda``.

>>> main(["--model-path", "tiny", "--batch-sizes", "1,2", "--new-tokens", "4", "--out", "bench.json"])  # doctest: +SKIP
"""

from eval.bench.cli import build_parser, main

__all__ = ["build_parser", "main"]
