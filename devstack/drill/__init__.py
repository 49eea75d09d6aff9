"""``make drill``: faults injected into the running local stack under sustained traffic.

``plan`` lists the faults and what each may cost; ``traffic`` is the load, ``faults``
does the damage, ``delivery`` checks what was stored and emailed, ``report`` judges.
"""
