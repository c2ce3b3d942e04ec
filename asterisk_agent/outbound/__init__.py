"""Outbound calls: a campaign file in, one call plan per patient, an outcome report out.

campaign.py reads and checks the file (each bad row named by its line, the
good rows kept); plan.py decides, from the clock and the attempts so far,
which calls may ring now and what each one's outcome is.  Both are pure: the
ARI origination and the call's dialog sit at the edges.
"""
