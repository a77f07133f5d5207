"""Test doubles for the live test tier (peers that stand in for external NFs).

- ``milenage``: 3GPP MILENAGE (TS 35.206) and IMS AKA vector helpers.
- ``diameter``: a minimal RFC 6733 Diameter codec and base-protocol handling.
- ``server``: ``DiameterServerDouble``, the threaded Diameter server the doubles below share.
- ``cx_hss``: ``CxHssTestDouble``, a Cx (TS 29.228/29.229) HSS stand-in.
- ``rx_pcrf``: ``RxPcrfTestDouble``, an Rx (TS 29.214) PCRF stand-in.
"""
