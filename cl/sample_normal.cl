/* Reparameterised sample of spec §3.3 step 2: y = mean + exp(logvar / 2) * eps (logvar is a log-variance). */
__kernel void vxm_sample_normal(__global const float *mean, __global const float *logvar, __global const float *eps,
                                __global float *y, ulong n)
{
    ulong g = get_global_id(0);
    if (g >= n)
        return;
    y[g] = mean[g] + exp(logvar[g] * 0.5f) * eps[g];
}
