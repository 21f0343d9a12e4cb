"""The DDPM abundance prior (torch): noise schedule, UNet, training and weight loading.

Nothing here is imported by ``urdm_plugin.core`` at start-up; torch loads on first use.
"""
