/* test-smtp-command: not written yet */
int main(void)
{
    return 77;
}
