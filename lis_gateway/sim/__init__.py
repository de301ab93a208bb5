"""The analyzer simulator (``lis-gateway simulate``) and wire replay (``lis-gateway replay``).

Pure parts (no reactor, no socket, time and randomness passed in):

* :mod:`~lis_gateway.sim.content`: analytes, made-up patients, samples and values;
* :mod:`~lis_gateway.sim.astm_styles`, :mod:`~lis_gateway.sim.hl7_styles`: each
  family's messages as it writes them (records, segments, queries, answers read back);
* :mod:`~lis_gateway.sim.families`: which driver gets which style, or why none;
* :mod:`~lis_gateway.sim.faults`: the fault plan and the byte-level fault cores;
* :mod:`~lis_gateway.sim.mllp_link`: the analyzer end of an MLLP link;
* :mod:`~lis_gateway.sim.session`: what to send next, retries, outcomes, report lines;
* :mod:`~lis_gateway.sim.recording`: reading analyzer messages out of wire recordings.

Twisted adapters: :mod:`~lis_gateway.sim.adapters` (protocols, fault wrapper,
transports) and the two commands, :mod:`~lis_gateway.sim.cli` and
:mod:`~lis_gateway.sim.replay`.
"""
