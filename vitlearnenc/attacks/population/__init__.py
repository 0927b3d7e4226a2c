"""Population attacks: the attacker holds N ciphertexts of one key plus public plain images
of the domain (spec §2.0) and pools statistics over the whole corpus."""
